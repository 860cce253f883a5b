package local_test

import (
	"context"
	"fmt"
	"log"

	"github.com/gowren/gowren/backends"
	"github.com/gowren/gowren/backends/local"
)

// A handler sends parts ahead of its reply, as fanout.Handle sends each
// task's result as it finishes; InvokeStream passes them on in order.
func ExampleBackend_InvokeStream() {
	b := local.New(&local.Options{Handler: func(ctx context.Context, payload []byte) []byte {
		for _, task := range []string{"first", "second"} {
			if err := backends.SendPart(ctx, []byte(task+" done")); err != nil {
				log.Print(err) // not streaming: the reply would carry it
			}
		}
		return []byte("batch done")
	}})
	defer b.Close()
	reply, err := b.InvokeStream(context.Background(), []byte("batch"), func(part []byte) {
		fmt.Println("part:", string(part))
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("reply:", string(reply))
	// Output:
	// part: first done
	// part: second done
	// reply: batch done
}
