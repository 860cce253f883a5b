package scratch

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestOpenAndDone(t *testing.T) {
	t.Setenv("TMPDIR", t.TempDir())
	t.Setenv("GOWREN_STORE", "")
	st, dir, err := Open(context.Background(), "", "demo")
	if err != nil {
		t.Fatal(err)
	}
	if dir != filepath.Join(os.TempDir(), "gowren-demo") {
		t.Fatalf("dir %q", dir)
	}
	if err := st.Put(context.Background(), "a/b", make([]byte, 2_500_000)); err != nil {
		t.Fatal(err)
	}
	st.Close()
	var out strings.Builder
	if err := Done(&out, dir, false); err != nil || out.String() != "data        2.5 MB kept in "+dir+" for the next run; -clean removes it\n" {
		t.Fatalf("Done = %v, %q", err, out.String())
	}
	out.Reset()
	if err := Done(&out, dir, true); err != nil || !strings.Contains(out.String(), "removed "+dir) {
		t.Fatalf("Done(clean) = %v, %q", err, out.String())
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("%s after -clean: %v", dir, err)
	}
	// A store the user named is never reported or removed.
	user := "file://" + t.TempDir()
	st, dir, err = Open(context.Background(), user, "demo")
	if err != nil || dir != "" {
		t.Fatalf("Open(%s) = %q, %v", user, dir, err)
	}
	st.Close()
	out.Reset()
	if err := Done(&out, dir, true); err != nil || out.Len() != 0 {
		t.Fatalf("Done on the user's store: %v, %q", err, out.String())
	}
}
