package ebb

import (
	"context"
	"encoding/json"
	"reflect"
	"testing"
	"time"
)

type plainArgs struct {
	N int    `json:"n"`
	S string `json:"s"`
}

func (plainArgs) Kind() string { return "test.plain" }

type mapArgs map[string]int

func (mapArgs) Kind() string { return "test.map" }

type selfArgs struct{ Seen bool }

func (selfArgs) Kind() string { return "test.self" }

func (a *selfArgs) UnmarshalJSON([]byte) error { a.Seen = true; return nil }

type textArgs struct{ V string }

func (textArgs) Kind() string { return "test.text" }

func (a *textArgs) UnmarshalText(b []byte) error { a.V = string(b); return nil }

type embedsTime struct{ time.Time }

func (embedsTime) Kind() string { return "test.time" }

// TestHandleEmptyArgs checks that args of {} reach a typed handler exactly as
// json.Unmarshal makes them, whether or not the shortcut applies.
func TestHandleEmptyArgs(t *testing.T) {
	check(t, true, plainArgs{})
	check(t, false, mapArgs{})
	check(t, false, selfArgs{})
	check(t, false, textArgs{})
	check(t, false, embedsTime{})
}

func check[T Args](t *testing.T, shortcut bool, _ T) {
	t.Helper()
	if got := emptyObjectIsZero[T](); got != shortcut {
		t.Errorf("%T: emptyObjectIsZero = %v, want %v", *new(T), got, shortcut)
	}
	var want T
	wantErr := json.Unmarshal([]byte("{}"), &want)
	h := NewHandlers()
	var got T
	Handle(h, func(_ context.Context, task *Task[T]) (any, error) {
		got = task.Args
		return nil, nil
	})
	var zero T
	_, err := h.lookup(zero.Kind()).fn(context.Background(), &TaskInfo{EncodedArgs: []byte("{}")})
	if (err != nil) != (wantErr != nil) {
		t.Fatalf("%T: error %v, json.Unmarshal's %v", zero, err, wantErr)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%T: handler got %#v, json.Unmarshal makes %#v", zero, got, want)
	}
}
