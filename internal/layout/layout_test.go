package layout_test

import (
	"context"
	"errors"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gowren/gowren/internal/layout"
	"github.com/gowren/gowren/storage"
	"github.com/gowren/gowren/storage/memstore"
)

func TestNewID(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 11, 26, 1, 2, 3, 456, time.FixedZone("CET", 3600))
	seen := map[string]bool{}
	for range 100 {
		id := layout.NewID(at)
		if err := layout.ValidateID(id); err != nil {
			t.Fatalf("NewID gave %q: %v", id, err)
		}
		if !strings.HasSuffix(id, "-20261126T000203") {
			t.Fatalf("NewID = %q, want the UTC time after the random part", id)
		}
		if got, want := layout.IDTime(id), at.Truncate(time.Second).UTC(); !got.Equal(want) {
			t.Fatalf("IDTime(%q) = %v, want %v", id, got, want)
		}
		seen[id] = true
	}
	if len(seen) < 95 { // 32 random bits: a collision in 100 is about 1 in a million
		t.Errorf("100 IDs, %d distinct", len(seen))
	}
}

func TestValidateID(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		id   string
		ok   bool
	}{
		{"canonical", "1a2b3c4d-20261126T010203", true},
		{"all digits", "01234567-20000229T235959", true},
		{"empty", "", false},
		{"uppercase hex", "1A2B3C4D-20261126T010203", false},
		{"not hex", "1a2b3c4g-20261126T010203", false},
		{"short random part", "1a2b3c4-20261126T010203", false},
		{"no dash", "1a2b3c4d_20261126T010203", false},
		{"no T", "1a2b3c4d-20261126 010203", false},
		{"bad month", "1a2b3c4d-20261326T010203", false},
		{"not a leap year", "1a2b3c4d-20250229T010203", false},
		{"hour 24", "1a2b3c4d-20261126T240000", false},
		{"trailing text", "1a2b3c4d-20261126T010203x", false},
		{"time first", "20261126T010203-1a2b3c4d", false},
		{"path", "../x", false},
		{"slash", "1a2b3c4d/20261126T010203", false},
		{"sign in time", "1a2b3c4d-+0261126T010203", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := layout.ValidateID(tc.id)
			if (err == nil) != tc.ok {
				t.Fatalf("ValidateID(%q) = %v, want ok=%v", tc.id, err, tc.ok)
			}
			if err != nil && !errors.Is(err, layout.ErrInvalidID) {
				t.Errorf("error %v does not wrap ErrInvalidID", err)
			}
			if got := layout.IDTime(tc.id); got.IsZero() == tc.ok {
				t.Errorf("IDTime(%q) = %v, want zero iff invalid", tc.id, got)
			}
		})
	}
}

func TestJobKeys(t *testing.T) {
	t.Parallel()
	const id = "1a2b3c4d-20261126T010203"
	j := layout.JobOf(id)
	for _, tc := range []struct{ name, got, want string }{
		{"prefix", j.Prefix(), "jobs/1a2b3c4d-20261126T010203/"},
		{"id", j.ID(), id},
		{"chunk", j.Chunk(3), "jobs/1a2b3c4d-20261126T010203/in/3"},
		{"inputs", j.Inputs(), "jobs/1a2b3c4d-20261126T010203/inputs"},
		{"manifest", j.Manifest(), "jobs/1a2b3c4d-20261126T010203/manifest"},
		{"stats", j.Stats(), "jobs/1a2b3c4d-20261126T010203/stats.json"},
		{"outputs", j.Outputs(), "jobs/1a2b3c4d-20261126T010203/out/"},
		{"output", j.Output(12, 1), "jobs/1a2b3c4d-20261126T010203/out/0000000012.1"},
		{"reply", j.Reply(12, 3), "jobs/1a2b3c4d-20261126T010203/reply/12.3"},
		{"ref group", layout.RefGroup(id), "refs/1a2b3c4d-20261126T010203/"},
		{"ref", layout.RefKey(id, strings.Repeat("ab", 32)), "refs/1a2b3c4d-20261126T010203/" + strings.Repeat("ab", 32)},
		{"id of a non-job prefix", layout.Job("refs/x/").ID(), ""},
		{"id of a nested prefix", layout.Job("jobs/a/b/").ID(), ""},
		{"id without the slash", layout.Job("jobs/a").ID(), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.got != tc.want {
				t.Fatalf("got %q, want %q", tc.got, tc.want)
			}
			if tc.want != "" && !strings.HasSuffix(tc.want, "/") {
				if err := storage.ValidateKey(tc.want); err != nil {
					t.Errorf("not a valid key: %v", err)
				}
			}
		})
	}
}

func TestOutputName(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		index, attempt int
		want           string
	}{
		{0, 0, "0000000000.0"},
		{0, 1, "0000000000.1"},
		{7, 12, "0000000007.12"},
		{1234567890, 3, "1234567890.3"},
		{12345678901, 3, "12345678901.3"},
		{math.MaxInt, math.MaxInt, strconv.Itoa(math.MaxInt) + "." + strconv.Itoa(math.MaxInt)},
	} {
		t.Run(tc.want, func(t *testing.T) {
			if got := layout.OutputName(tc.index, tc.attempt); got != tc.want {
				t.Fatalf("OutputName(%d, %d) = %q, want %q", tc.index, tc.attempt, got, tc.want)
			}
			i, a, ok := layout.ParseOutputName(tc.want)
			if !ok || i != tc.index || a != tc.attempt {
				t.Fatalf("ParseOutputName(%q) = %d, %d, %v", tc.want, i, a, ok)
			}
		})
	}
}

func TestParseOutputNameRejects(t *testing.T) {
	t.Parallel()
	for _, name := range []string{
		"", ".", "3.0", "000000003.0", "0000000003", "0000000003.", ".1",
		"0000000003.01", "00000000003.1", "+000000003.1", "-000000003.1", "0000000003.-1",
		"0000000003.+1", "0000000003.1.2", "0000000003.1 ", " 0000000003.1", "000000000x.1",
		"99999999999999999999.1", "0000000003.99999999999999999999", "0000000003/1",
	} {
		t.Run(name, func(t *testing.T) {
			if i, a, ok := layout.ParseOutputName(name); ok {
				t.Fatalf("ParseOutputName(%q) = %d, %d, true; want rejected", name, i, a)
			}
		})
	}
}

func TestParseOutput(t *testing.T) {
	t.Parallel()
	j := layout.JobOf("1a2b3c4d-20261126T010203")
	other := layout.JobOf("ffffffff-20261126T010203")
	if i, a, ok := j.ParseOutput(j.Output(42, 2)); !ok || i != 42 || a != 2 {
		t.Fatalf("ParseOutput(Output(42, 2)) = %d, %d, %v", i, a, ok)
	}
	for _, key := range []string{
		other.Output(42, 2), j.Reply(42, 2), j.Chunk(0), j.Manifest(), j.Outputs(),
		"x" + j.Output(42, 2), strings.TrimPrefix(j.Output(42, 2), "jobs/"),
	} {
		if _, _, ok := j.ParseOutput(key); ok {
			t.Errorf("ParseOutput(%q) accepted a key that is not one of the job's outputs", key)
		}
	}
}

func TestParseRefKey(t *testing.T) {
	t.Parallel()
	const id = "1a2b3c4d-20261126T010203"
	hash := strings.Repeat("0f", 32)
	if e, h, ok := layout.ParseRefKey(layout.RefKey(id, hash)); !ok || e != id || h != hash {
		t.Fatalf("ParseRefKey(RefKey) = %q, %q, %v", e, h, ok)
	}
	for _, key := range []string{
		"refs/" + hash, "refs/x/" + hash, "refs/" + id + "/" + hash[:63], "refs/" + id + "/" + strings.ToUpper(hash),
		"refs/" + id + "/" + hash + "/x", "jobs/" + id + "/" + hash, "",
	} {
		if _, _, ok := layout.ParseRefKey(key); ok {
			t.Errorf("ParseRefKey(%q) accepted it", key)
		}
	}
}

func TestList(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := memstore.New(nil)
	defer st.Close()
	const (
		old    = "aaaaaaaa-20260101T000000"
		recent = "bbbbbbbb-20991231T000000"
		early  = "cccccccc-20250101T000000"
	)
	hash := strings.Repeat("ab", 32)
	objs := map[string]int{
		layout.JobOf(recent).Chunk(0):                 5,
		layout.JobOf(recent).Driver(early):            3,
		layout.JobOf(recent).Driver(old):              3,
		layout.JobOf(recent).Stats():                  2,
		layout.JobOf(old).Chunk(0):                    10,
		layout.JobOf(old).Chunk(1):                    10,
		layout.JobOf(old).Output(3, 1):                4,
		layout.JobOf(old).Manifest():                  2,
		layout.JobOf("odd").Manifest():                1,
		"jobs/stray":                                  1,
		layout.RefKey(recent, hash):                   7,
		layout.RefKey(old, hash):                      7,
		layout.RefKey(old, strings.Repeat("cd", 32)):  8,
		"refs/" + hash:                                9, // from before executor IDs
		"unrelated/" + layout.JobOf(early).Manifest(): 1,
	}
	for k, n := range objs {
		if err := st.Put(ctx, k, make([]byte, n)); err != nil {
			t.Fatal(err)
		}
	}
	jobs, err := layout.Jobs(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, g := range jobs {
		ids = append(ids, g.ID)
	}
	if got, want := strings.Join(ids, " "), "odd "+old+" "+recent; got != want {
		t.Fatalf("jobs %q, want %q (oldest first, no time first)", got, want)
	}
	g := jobs[1]
	want := layout.Group{ID: old, Prefix: "jobs/" + old + "/", Objects: 4, Bytes: 26, Inputs: 2, Outputs: 1, Created: layout.IDTime(old), Modified: g.Modified}
	if g != want || g.Modified.IsZero() {
		t.Errorf("job group %+v, want %+v", g, want)
	}
	one, err := layout.JobGroup(ctx, st, old)
	if err != nil || one != g {
		t.Errorf("JobGroup = %+v, %v; want %+v", one, err, g)
	}
	// The recent job's heartbeat is its newest lease; its statistics say
	// it finished.
	var newest time.Time
	for obj, err := range st.List(ctx, layout.JobOf(recent).Drivers()) {
		if err != nil {
			t.Fatal(err)
		}
		if obj.ModTime.After(newest) {
			newest = obj.ModTime
		}
	}
	if r := jobs[2]; r.Drivers != 2 || !r.Heartbeat.Equal(newest) || newest.IsZero() || !r.Finished || r.Objects != 4 {
		t.Errorf("job group %+v: want 2 drivers, heartbeat %v, finished", r, newest)
	}
	none, err := layout.JobGroup(ctx, st, early)
	if err != nil || none.Objects != 0 || none.ID != early {
		t.Errorf("JobGroup of a job without objects = %+v, %v", none, err)
	}

	refs, err := layout.RefGroups(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	if len(refs) != 3 {
		t.Fatalf("ref groups %+v, want 3", refs)
	}
	byID := map[string]layout.Group{}
	for _, r := range refs {
		byID[r.ID] = r
	}
	if r := byID[old]; r.Objects != 2 || r.Bytes != 15 || r.Prefix != "refs/"+old+"/" || !r.Created.Equal(layout.IDTime(old)) {
		t.Errorf("group of %s: %+v", old, r)
	}
	if r := byID[hash]; r.Objects != 1 || r.Bytes != 9 || r.Prefix != "refs/"+hash || r.Created.IsZero() {
		t.Errorf("value from before executor IDs: %+v, want a group of its own with its object's time", r)
	}
	if refs[len(refs)-1].ID != recent {
		t.Errorf("ref groups not oldest first: %+v", refs)
	}
}

// FuzzParseOutputName checks that the parser accepts exactly the names
// OutputName makes: whatever it accepts is written back the same way.
func FuzzParseOutputName(f *testing.F) {
	for _, s := range []string{"0000000000.0", "0000000012.3", "12345678901.7", "3.0", "+000000003.1", "00000000003.1", "0000000003.01"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		i, a, ok := layout.ParseOutputName(name)
		if !ok {
			return
		}
		if i < 0 || a < 0 {
			t.Fatalf("ParseOutputName(%q) = %d, %d: negative", name, i, a)
		}
		if back := layout.OutputName(i, a); back != name {
			t.Fatalf("ParseOutputName(%q) = %d, %d, but OutputName gives %q", name, i, a, back)
		}
		j := layout.JobOf("1a2b3c4d-20261126T010203")
		if ji, ja, ok := j.ParseOutput(j.Outputs() + name); !ok || ji != i || ja != a {
			t.Fatalf("ParseOutput of the full key = %d, %d, %v", ji, ja, ok)
		}
	})
}

func TestBundle(t *testing.T) {
	j := layout.JobOf("1a2b3c4d-20261126T010203")
	key := j.Bundle(42, 2, "ab12x7")
	if want := "jobs/1a2b3c4d-20261126T010203/out/0000000042.2+ab12x7"; key != want {
		t.Fatalf("Bundle(42, 2, ab12x7) = %q, want %q", key, want)
	}
	if i, a, ok := j.ParseBundle(key); !ok || i != 42 || a != 2 {
		t.Fatalf("ParseBundle(%q) = %d, %d, %v", key, i, a, ok)
	}
	if _, _, ok := j.ParseOutput(key); ok {
		t.Errorf("ParseOutput(%q) accepted a bundle as an output", key)
	}
	for _, tag := range []string{"", "a/b", "a+b", "a.b", "é"} {
		if k := j.Bundle(1, 0, tag); k != "" {
			t.Errorf("Bundle(1, 0, %q) = %q, want \"\" (a bad tag)", tag, k)
		}
	}
	other := layout.JobOf("ffffffff-20261126T010203")
	for _, k := range []string{
		j.Output(42, 2), other.Bundle(42, 2, "x"), j.Outputs() + "0000000042.2+", j.Outputs() + "0000000042.2+a+b",
		j.Outputs() + "42.2+x", j.Reply(42, 2),
	} {
		if _, _, ok := j.ParseBundle(k); ok {
			t.Errorf("ParseBundle(%q) accepted a key that is not one of the job's bundles", k)
		}
	}
	// Replies: what a driver reads for replies, and which are bundles.
	for _, tc := range []struct {
		key        string
		ok, bundle bool
	}{
		{key, true, true}, {j.Output(42, 2), true, false}, {j.Data(42, 2), false, false},
		{j.Reply(42, 2), false, false}, {other.Bundle(42, 2, "x"), false, false}, {j.Outputs() + "0000000042.2+", false, false},
	} {
		if ok, bundle := j.Replies(tc.key); ok != tc.ok || bundle != tc.bundle {
			t.Errorf("Replies(%q) = %v, %v; want %v, %v", tc.key, ok, bundle, tc.ok, tc.bundle)
		}
	}
}
