package ebb_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/ebbq/ebb"
	"github.com/ebbq/ebb/ebbdriver/ebbsqlite"
)

type ThumbnailArgs struct {
	Image string `json:"image"`
	Width int    `json:"width"`
}

func (ThumbnailArgs) Kind() string { return "thumbnail" }

// EnqueueMany stores a batch in one round trip per queue. A batch is checked
// whole before anything is sent: one bad task names itself and stores none.
func Example_enqueueMany() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "ebb-example")
	defer os.RemoveAll(dir)
	drv, err := ebbsqlite.Open(ctx, filepath.Join(dir, "ebb.db"), nil)
	if err != nil {
		log.Fatal(err)
	}
	defer drv.Close()
	client, _ := ebb.NewClient(drv, nil)

	_, err = client.EnqueueMany(ctx, []ebb.EnqueueParams{
		{Args: ThumbnailArgs{Image: "a.png", Width: 64}},
		{Args: ThumbnailArgs{Image: "b.png", Width: 64}, Opts: &ebb.EnqueueOpts{Priority: 7}},
	})
	fmt.Println(err)
	qs, _ := client.QueueList(ctx)
	fmt.Println("queues after the rejected batch:", len(qs))

	batch := []ebb.EnqueueParams{
		{Args: ThumbnailArgs{Image: "a.png", Width: 64}},
		{Args: ThumbnailArgs{Image: "b.png", Width: 128}, Opts: &ebb.EnqueueOpts{Priority: ebb.PriorityHigh}},
		// Raw JSON for producers without the Go type.
		{Kind: "thumbnail", RawArgs: json.RawMessage(`{"image":"c.png","width":256}`)},
	}
	results, err := client.EnqueueMany(ctx, batch)
	if err != nil {
		log.Fatal(err)
	}
	for i, res := range results {
		task, _ := client.Task(ctx, res.ID)
		fmt.Printf("%d: %s %s priority %d args %s\n", i, task.Kind, res.State, task.Priority, task.EncodedArgs)
	}
	// Output:
	// ebb: enqueue task 2 of 2: invalid enqueue options: priority 7: use PriorityHigh (1), PriorityNormal (2) or PriorityLow (3)
	// queues after the rejected batch: 0
	// 0: thumbnail queued priority 2 args {"image":"a.png","width":64}
	// 1: thumbnail queued priority 1 args {"image":"b.png","width":128}
	// 2: thumbnail queued priority 2 args {"image":"c.png","width":256}
}
