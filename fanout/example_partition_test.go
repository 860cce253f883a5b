package fanout_test

import (
	"bufio"
	"context"
	"fmt"
	"log"
	"strings"

	"github.com/gowren/gowren/backends/local"
	"github.com/gowren/gowren/fanout"
	"github.com/gowren/gowren/storage/memstore"
)

// LongestLine returns the longest line of its chunk, which it reads from
// the job's store.
var LongestLine = fanout.Register("example.longestLine", func(ctx context.Context, c fanout.Chunk) (string, error) {
	r, err := c.Open(ctx)
	if err != nil {
		return "", err
	}
	defer r.Close()
	longest := ""
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		if len(sc.Text()) > len(longest) {
			longest = sc.Text()
		}
	}
	return longest, sc.Err()
})

func ExamplePartition() {
	ctx := context.Background()
	st := memstore.New(nil)
	defer st.Close()
	st.Put(ctx, "poems/a.txt", []byte("Tyger Tyger, burning bright,\nIn the forests of the night;\n"))
	st.Put(ctx, "poems/b.txt", []byte("So much depends\nupon\na red wheel\nbarrow\n"))

	ex := fanout.NewExecutor(local.New(nil), &fanout.Options{Store: st})
	defer ex.Close()

	// Cut every object under poems/ into line-aligned chunks of about 20
	// bytes: each line lands in exactly one chunk.
	chunks, err := fanout.Partition(ctx, st, "poems/", &fanout.PartitionOptions{ChunkSize: 20, Lines: true})
	if err != nil {
		log.Fatal(err)
	}
	for _, c := range chunks {
		fmt.Println(c)
	}
	longest, err := fanout.Map(ctx, ex, LongestLine, chunks)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(strings.Join(longest, " | "))
	// Output:
	// poems/a.txt[0:20] lines
	// poems/a.txt[20:40] lines
	// poems/a.txt[40:58] lines
	// poems/b.txt[0:20] lines
	// poems/b.txt[20:40] lines
	// Tyger Tyger, burning bright, | In the forests of the night; |  | So much depends | a red wheel
}
