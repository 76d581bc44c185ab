package ebbpostgres_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ebbq/ebb"
	"github.com/ebbq/ebb/ebbdriver/ebbpostgres"
)

// SignupArgs is the task of the examples: welcome a user who just signed
// up.
type SignupArgs struct {
	Email string `json:"email"`
}

func (SignupArgs) Kind() string { return "welcome" }

// exampleURL is the database the examples use: EBB_TEST_PG_URL, or the
// local test server, in a schema of their own that they drop again.
func exampleURL(schema string) string {
	url := baseURL()
	if strings.Contains(url, "?") {
		return url + "&schema=" + schema
	}
	return url + "?schema=" + schema
}

func baseURL() string {
	if url := os.Getenv("EBB_TEST_PG_URL"); url != "" {
		return url
	}
	return "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
}

func dropSchema(d *ebbpostgres.Driver) {
	_, _ = d.Pool().Exec(context.Background(), "DROP SCHEMA "+pgx.Identifier{d.Schema()}.Sanitize()+" CASCADE")
}

// A task enqueued in the same transaction as the row it is about exists if
// and only if that transaction commits.
func Example_enqueueTx() {
	ctx := context.Background()
	d, err := ebbpostgres.Open(ctx, exampleURL(fmt.Sprintf("ebb_example_enqueue_%d", os.Getpid())), nil)
	if err != nil {
		log.Fatal(err)
	}
	defer d.Close()
	defer dropSchema(d)
	client, err := ebb.NewClient(d, nil)
	if err != nil {
		log.Fatal(err)
	}
	users := pgx.Identifier{d.Schema(), "users"}.Sanitize()
	if _, err := d.Pool().Exec(ctx, "CREATE TABLE "+users+" (email text PRIMARY KEY)"); err != nil {
		log.Fatal(err)
	}

	signUp := func(email string, commit bool) string {
		tx, err := d.Pool().Begin(ctx)
		if err != nil {
			log.Fatal(err)
		}
		defer tx.Rollback(ctx) // a no-op after Commit
		if _, err := tx.Exec(ctx, "INSERT INTO "+users+" (email) VALUES ($1)", email); err != nil {
			log.Fatal(err)
		}
		res, err := ebb.EnqueueTx(ctx, client, tx, SignupArgs{Email: email}, nil)
		if err != nil {
			log.Fatal(err)
		}
		if commit {
			if err := tx.Commit(ctx); err != nil {
				log.Fatal(err)
			}
		}
		return res.ID
	}
	kept := signUp("ada@example.com", true)
	dropped := signUp("bob@example.com", false)

	_, err = client.Task(ctx, kept)
	fmt.Println("committed:", err == nil)
	_, err = client.Task(ctx, dropped)
	fmt.Println("rolled back, not found:", errors.Is(err, ebb.ErrTaskNotFound))
	// Output:
	// committed: true
	// rolled back, not found: true
}

// A handler completes its task inside its own transaction, so what it
// writes and the task's completion commit together or not at all.
func Example_completeTx() {
	ctx := context.Background()
	d, err := ebbpostgres.Open(ctx, exampleURL(fmt.Sprintf("ebb_example_complete_%d", os.Getpid())), nil)
	if err != nil {
		log.Fatal(err)
	}
	defer d.Close()
	defer dropSchema(d)
	mails := pgx.Identifier{d.Schema(), "welcome_mails"}.Sanitize()
	if _, err := d.Pool().Exec(ctx, "CREATE TABLE "+mails+" (email text PRIMARY KEY)"); err != nil {
		log.Fatal(err)
	}

	handlers := ebb.NewHandlers()
	ebb.Handle(handlers, func(ctx context.Context, task *ebb.Task[SignupArgs]) (any, error) {
		tx, err := d.Pool().Begin(ctx)
		if err != nil {
			return nil, err
		}
		defer tx.Rollback(ctx)
		if _, err := tx.Exec(ctx, "INSERT INTO "+mails+" (email) VALUES ($1)", task.Args.Email); err != nil {
			return nil, err
		}
		if err := ebb.CompleteTx(ctx, tx, task.TaskInfo, "sent"); err != nil {
			return nil, err
		}
		return nil, tx.Commit(ctx)
	})
	w, err := ebb.NewWorker(d, &ebb.WorkerConfig{Handlers: handlers, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		log.Fatal(err)
	}
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	go func() { _ = w.Run(wctx) }()

	client, err := ebb.NewClient(d, nil)
	if err != nil {
		log.Fatal(err)
	}
	res, err := client.Enqueue(ctx, SignupArgs{Email: "ada@example.com"}, nil)
	if err != nil {
		log.Fatal(err)
	}
	wait, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	task, err := client.Wait(wait, res.ID)
	if err != nil {
		log.Fatal(err)
	}
	var n int
	if err := d.Pool().QueryRow(ctx, "SELECT count(*) FROM "+mails).Scan(&n); err != nil {
		log.Fatal(err)
	}
	fmt.Println(task.State, string(task.Result), n)
	// Output: succeeded "sent" 1
}

// database/sql users hand the driver's SQL() form to ebb and enqueue in a
// *sql.Tx of a database opened with pgx's stdlib driver.
func Example_databaseSQL() {
	ctx := context.Background()
	url := exampleURL(fmt.Sprintf("ebb_example_sql_%d", os.Getpid()))
	d, err := ebbpostgres.Open(ctx, url, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer d.Close()
	defer dropSchema(d)
	client, err := ebb.NewClient(d.SQL(), nil)
	if err != nil {
		log.Fatal(err)
	}
	db, err := sql.Open("pgx", baseURL()) // the application's own database handle
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		log.Fatal(err)
	}
	res, err := ebb.EnqueueTx(ctx, client, tx, SignupArgs{Email: "ada@example.com"}, nil)
	if err != nil {
		log.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		log.Fatal(err)
	}
	task, err := client.Task(ctx, res.ID)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(task.Kind, task.State)
	// Output: welcome queued
}
