package layout

import (
	"cmp"
	"context"
	"slices"
	"strings"
	"time"

	"github.com/gowren/gowren/storage"
)

// Group sums up the objects under one prefix: a job's (jobs/<id>/), or an
// executor's shared values (refs/<id>/).
type Group struct {
	// ID is the job or executor ID: the segment after jobs/ or refs/. It
	// may not be a valid ID (objects left by something else).
	ID string
	// Prefix holds every object of the group: List it to delete them.
	Prefix string
	// Objects and Bytes count the objects and their sizes.
	Objects int
	Bytes   int64
	// Inputs and Outputs count a job's in/ objects, and its out/ and data/
	// objects (stored outputs and replies).
	Inputs, Outputs int
	// Heartbeat is the newest write of a job's driver leases
	// (drivers/<driver id>), the zero time when it has none; Drivers
	// counts the leases. Finished reports saved statistics (stats.json):
	// the job ended.
	Heartbeat time.Time
	Drivers   int
	Finished  bool
	// Created is the time written in the ID, or the zero time when the ID
	// holds none. A value written directly under refs/ by a gowren from
	// before executor IDs is a group of its own whose Created is its
	// object's time.
	Created time.Time
	// Modified is the newest object's modification time.
	Modified time.Time
}

// Jobs lists the jobs that have objects in st, oldest first (by the time in
// their IDs; IDs without one first), in one listing of jobs/.
func Jobs(ctx context.Context, st storage.Store) ([]Group, error) {
	return scan(ctx, st, JobsPrefix, jobGroup)
}

// JobGroup sums up the objects of one job; Objects is 0 when it has none.
// It lists only the job's own prefix.
func JobGroup(ctx context.Context, st storage.Store, id string) (Group, error) {
	gs, err := scan(ctx, st, JobOf(id).Prefix(), jobGroup)
	if err != nil || len(gs) == 0 {
		return Group{ID: id, Prefix: JobOf(id).Prefix(), Created: IDTime(id)}, err
	}
	return gs[0], nil
}

// RefGroups lists the groups of shared values in st, oldest first, in one
// listing of refs/. A group outlives its executor when the driver was killed
// before Close, or ran with KeepData.
func RefGroups(ctx context.Context, st storage.Store) ([]Group, error) {
	return scan(ctx, st, RefsPrefix, refGroup)
}

// groupOf places an object: the ID of its group, the group's prefix, and
// the part of the key after it; ok is false for an object of no group.
type groupOf func(key string) (id, prefix, rest string, ok bool)

func jobGroup(key string) (id, prefix, rest string, ok bool) {
	after, found := strings.CutPrefix(key, JobsPrefix)
	if !found {
		return "", "", "", false
	}
	id, rest, found = strings.Cut(after, "/")
	if !found { // an object directly under jobs/ belongs to no job
		return "", "", "", false
	}
	return id, JobOf(id).Prefix(), rest, true
}

func refGroup(key string) (id, prefix, rest string, ok bool) {
	after, found := strings.CutPrefix(key, RefsPrefix)
	if !found {
		return "", "", "", false
	}
	id, rest, found = strings.Cut(after, "/")
	if !found { // refs/<hash>, from before executor IDs: a group of its own
		return id, key, "", true
	}
	return id, RefGroup(id), rest, true
}

func scan(ctx context.Context, st storage.Store, prefix string, place groupOf) ([]Group, error) {
	byPrefix := map[string]*Group{}
	var order []*Group
	for obj, err := range st.List(ctx, prefix) {
		if err != nil {
			return nil, err
		}
		id, p, rest, ok := place(obj.Key)
		if !ok {
			continue
		}
		g := byPrefix[p]
		if g == nil {
			g = &Group{ID: id, Prefix: p, Created: IDTime(id)}
			if p == obj.Key { // a single-object group has the object's time
				g.Created = obj.ModTime
			}
			byPrefix[p] = g
			order = append(order, g)
		}
		g.Objects++
		g.Bytes += obj.Size
		switch {
		case strings.HasPrefix(rest, "in/"):
			g.Inputs++
		case strings.HasPrefix(rest, "out/"), strings.HasPrefix(rest, "data/"):
			g.Outputs++
		case strings.HasPrefix(rest, "drivers/"):
			g.Drivers++
			if obj.ModTime.After(g.Heartbeat) {
				g.Heartbeat = obj.ModTime
			}
		case rest == "stats.json":
			g.Finished = true
		}
		if obj.ModTime.After(g.Modified) {
			g.Modified = obj.ModTime
		}
	}
	gs := make([]Group, len(order))
	for i, g := range order {
		gs[i] = *g
	}
	slices.SortFunc(gs, func(a, b Group) int {
		return cmp.Or(a.Created.Compare(b.Created), strings.Compare(a.ID, b.ID))
	})
	return gs, nil
}
