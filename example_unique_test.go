package ebb_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/ebbq/ebb"
	"github.com/ebbq/ebb/ebbdriver/ebbsqlite"
)

type WelcomeArgs struct {
	UserID int `json:"user_id"`
}

func (WelcomeArgs) Kind() string { return "welcome-email" }

// A unique key keeps a second task with the same key out while the first is
// pending: a producer that retries, or two that race, still send one welcome
// email. The duplicate enqueue returns the holder's id.
func Example_unique() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "ebb-example")
	defer os.RemoveAll(dir)
	drv, err := ebbsqlite.Open(ctx, filepath.Join(dir, "ebb.db"), nil)
	if err != nil {
		log.Fatal(err)
	}
	defer drv.Close()
	client, _ := ebb.NewClient(drv, nil)

	welcome := func(user int) *ebb.EnqueueResult {
		res, err := client.Enqueue(ctx, WelcomeArgs{UserID: user}, &ebb.EnqueueOpts{
			// Held until the task succeeds, dies or is cancelled; set TTL to
			// hold it for a fixed time instead.
			Unique: &ebb.UniqueOpts{Key: fmt.Sprintf("welcome:%d", user)},
		})
		if err != nil {
			log.Fatal(err)
		}
		return res
	}
	first := welcome(42)
	again := welcome(42)
	other := welcome(7)
	fmt.Println("first:", first.State, "duplicate:", first.Duplicate)
	fmt.Println("again:", "duplicate:", again.Duplicate, "same task:", again.ID == first.ID)
	fmt.Println("other user:", "duplicate:", other.Duplicate, "same task:", other.ID == first.ID)

	qs, _ := client.QueueList(ctx)
	fmt.Println("tasks stored:", qs[0].Queued)
	// Output:
	// first: queued duplicate: false
	// again: duplicate: true same task: true
	// other user: duplicate: false same task: false
	// tasks stored: 2
}
