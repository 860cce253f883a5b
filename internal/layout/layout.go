// Package layout is the one place that knows how gowren names the objects it
// keeps in a store: it builds every key the project writes or reads, parses
// the ones that are read back by name, makes and checks the IDs of jobs and
// executors, and sums up what a store holds for the gowren command.
//
// # Keys
//
// All keys are relative to the store (whose URL may carry a prefix of its
// own):
//
//	jobs/<job id>/in/<n>                 aggregated inputs, chunk n
//	jobs/<job id>/inputs                 where each input of an async job is
//	jobs/<job id>/out/<index>.<attempt>  a stored output, or an async reply
//	jobs/<job id>/out/<index>.<attempt>+<tag> a bundle of replies an invoker collected
//	jobs/<job id>/data/<index>.<attempt> a stored output of a task whose reply goes to the store or a bundle
//	jobs/<job id>/reply/<index>.<attempt> a reply spilled to the store
//	jobs/<job id>/manifest               the job's description (JSON)
//	jobs/<job id>/stats.json             its final statistics (JSON)
//	jobs/<job id>/drivers/<driver id>    a driver's lease, rewritten while it runs
//	refs/<executor id>/<sha256>          a value shared with fanout.Put
//
// The index in out/ keys is zero-padded to IndexWidth digits, so the keys of
// a job's outputs sort by index and can be listed from a point on.
//
// # IDs
//
// Job and executor IDs have one shape, "<8 hex>-<UTC time 20060102T150405>":
// the random part first, so that the keys of concurrent jobs spread over the
// store's key space (S3 scales request rates per key range), and the time
// after it, so that an ID is readable and says how old its objects are.
package layout

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Top-level prefixes.
const (
	// JobsPrefix holds one prefix per job.
	JobsPrefix = "jobs/"
	// RefsPrefix holds one group per executor of the values it shared with
	// fanout.Put.
	RefsPrefix = "refs/"
)

// IndexWidth is the number of digits a task index is padded to in output
// keys. An index with more digits is written in full.
const IndexWidth = 10

// timeFormat is the time part of an ID, always UTC.
const timeFormat = "20060102T150405"

// randLen is the length of the random part of an ID (4 bytes in hex).
const randLen = 8

// idLen is the length of every ID.
const idLen = randLen + 1 + len(timeFormat)

// ErrInvalidID means a string is not a job or executor ID.
var ErrInvalidID = errors.New("not a gowren ID")

// NewID returns a new job or executor ID created at t: 8 random hex digits,
// "-", and t in UTC to the second, e.g. "1a2b3c4d-20261126T010203".
func NewID(t time.Time) string {
	var b [randLen / 2]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand crashes the program instead)
	return hex.EncodeToString(b[:]) + "-" + t.UTC().Format(timeFormat)
}

// ValidateID reports whether id has the shape NewID gives: 8 lowercase hex
// digits, "-", and a valid UTC time written as 20060102T150405. The error
// wraps ErrInvalidID.
func ValidateID(id string) error {
	if _, ok := parseID(id); !ok {
		return fmt.Errorf("%q: %w (want 8 hex digits, \"-\" and a UTC time such as 1a2b3c4d-20261126T010203)", truncate(id, 64), ErrInvalidID)
	}
	return nil
}

// IDTime returns the time written in a job or executor ID, or the zero time
// when id is not one.
func IDTime(id string) time.Time {
	t, _ := parseID(id)
	return t
}

func parseID(id string) (time.Time, bool) {
	if len(id) != idLen || id[randLen] != '-' {
		return time.Time{}, false
	}
	for i := range randLen {
		c := id[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return time.Time{}, false
		}
	}
	ts := id[randLen+1:]
	t, err := time.Parse(timeFormat, ts)
	if err != nil || t.Format(timeFormat) != ts {
		return time.Time{}, false
	}
	return t, true
}

// Job is the key prefix of one job's objects, "jobs/<id>/". The driver
// makes it with JobOf; a worker takes it as a request carries it, Job(p).
// Its methods build the keys of the job's objects.
type Job string

// JobOf returns the prefix of the job with the given ID. It does not check
// the ID; see ValidateID.
func JobOf(id string) Job { return Job(JobsPrefix + id + "/") }

// Prefix returns the prefix as a string, for List.
func (j Job) Prefix() string { return string(j) }

// ID returns the job ID the prefix names, or "" when j is not a job prefix.
func (j Job) ID() string {
	id, ok := strings.CutPrefix(string(j), JobsPrefix)
	if !ok {
		return ""
	}
	id, ok = strings.CutSuffix(id, "/")
	if !ok || id == "" || strings.Contains(id, "/") {
		return ""
	}
	return id
}

// Chunk returns the key of aggregated input object n: "in/<n>".
func (j Job) Chunk(n int) string { return string(j) + "in/" + strconv.Itoa(n) }

// Inputs returns the key of an async job's input index.
func (j Job) Inputs() string { return string(j) + "inputs" }

// Manifest returns the key of the job's manifest.
func (j Job) Manifest() string { return string(j) + "manifest" }

// Stats returns the key of the job's saved statistics.
func (j Job) Stats() string { return string(j) + "stats.json" }

// Drivers returns the prefix of the leases of the drivers running an async
// job: "drivers/<driver id>", each rewritten while its driver runs.
func (j Job) Drivers() string { return string(j) + "drivers/" }

// Driver returns the key of one driver's lease.
func (j Job) Driver(id string) string { return string(j) + "drivers/" + id }

// Outputs returns the prefix of the job's stored outputs and async replies.
func (j Job) Outputs() string { return string(j) + "out/" }

// Output returns the key of the stored output, or async reply, of copy
// attempt of task index: "out/<index>.<attempt>" with the index padded to
// IndexWidth digits. Neither may be negative.
func (j Job) Output(index, attempt int) string {
	return string(j) + "out/" + OutputName(index, attempt)
}

// ParseOutput returns the index and attempt of key, a key Output of j
// returns; ok is false for any other key.
func (j Job) ParseOutput(key string) (index, attempt int, ok bool) {
	name, found := strings.CutPrefix(key, j.Outputs())
	if !found {
		return 0, 0, false
	}
	return ParseOutputName(name)
}

// Bundle returns the key of a bundle: the replies of several invocations
// that an invoker of an invoker tree collected into one object,
// "out/<index>.<attempt>+<tag>", named after the copy whose first task has
// the highest index in it (a driver lists its replies from the lowest
// first task still awaited: some of a bundle's copies may have been given
// up on, but one still awaited has an index at or above that, so the
// bundle is listed) and made unique by tag, letters and digits only (the
// invoker's ID and a sequence number). An empty tag or one of other
// characters gives "".
func (j Job) Bundle(index, attempt int, tag string) string {
	if tag == "" || !alnum(tag) {
		return ""
	}
	return string(j) + "out/" + OutputName(index, attempt) + "+" + tag
}

// ParseBundle returns the index and attempt a key Bundle of j returns is
// named after; ok is false for any other key, an output's included.
func (j Job) ParseBundle(key string) (index, attempt int, ok bool) {
	name, found := strings.CutPrefix(key, j.Outputs())
	if !found {
		return 0, 0, false
	}
	name, tag, found := strings.Cut(name, "+")
	if !found || tag == "" || !alnum(tag) {
		return 0, 0, false
	}
	return ParseOutputName(name)
}

// Replies reports whether key names an object under out/ that a driver
// reads for replies, a reply or stored output (ParseOutput) or a bundle
// (ParseBundle), and whether it is a bundle.
func (j Job) Replies(key string) (ok, bundle bool) {
	if _, _, bundle = j.ParseBundle(key); bundle {
		return true, true
	}
	_, _, ok = j.ParseOutput(key)
	return ok, false
}

func alnum(s string) bool {
	for i := range len(s) {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'z') && (c < 'A' || c > 'Z') {
			return false
		}
	}
	return true
}

// Data returns the key of a stored output that must not be listed with
// the replies: "data/<index>.<attempt>", the output of a task whose reply
// goes to the store (an async invocation's, whose reply key is its first
// task's Output) or to a collecting invoker (the reply, in a bundle, names
// it).
func (j Job) Data(index, attempt int) string {
	return string(j) + "data/" + OutputName(index, attempt)
}

// Reply returns the key under which a worker spills a reply too large to
// return, named after the first task of its batch: "reply/<index>.<attempt>".
// The reply that replaces it names the key, so it is never parsed.
func (j Job) Reply(index, attempt int) string {
	return string(j) + "reply/" + strconv.Itoa(index) + "." + strconv.Itoa(attempt)
}

// OutputName is the part of an output key after "out/":
// "<index>.<attempt>", the index zero-padded to IndexWidth digits. Neither
// may be negative.
func OutputName(index, attempt int) string {
	b := make([]byte, 0, IndexWidth+4)
	if n := digits(index); n < IndexWidth {
		for range IndexWidth - n {
			b = append(b, '0')
		}
	}
	b = strconv.AppendInt(b, int64(index), 10)
	b = append(b, '.')
	b = strconv.AppendInt(b, int64(attempt), 10)
	return string(b)
}

// ParseOutputName is the inverse of OutputName. It accepts exactly the
// names OutputName returns, so two names never mean the same output: no
// sign, an index of IndexWidth digits (more only without a leading zero),
// an attempt without leading zeros.
func ParseOutputName(name string) (index, attempt int, ok bool) {
	is, as, found := strings.Cut(name, ".")
	if !found || len(is) < IndexWidth || !allDigits(is) || !allDigits(as) {
		return 0, 0, false
	}
	if (len(is) > IndexWidth && is[0] == '0') || (len(as) > 1 && as[0] == '0') {
		return 0, 0, false
	}
	i, err1 := strconv.Atoi(is)
	a, err2 := strconv.Atoi(as)
	if err1 != nil || err2 != nil { // out of range
		return 0, 0, false
	}
	return i, a, true
}

// RefGroup returns the prefix of the values an executor shared with Put:
// "refs/<executor id>/". Each executor deletes only its own group, so a
// value two drivers share lives as long as each of them needs it.
func RefGroup(executorID string) string { return RefsPrefix + executorID + "/" }

// RefKey returns the key of a shared value: "refs/<executor id>/<hash>",
// hash being the SHA-256 of the encoded value in lowercase hex.
func RefKey(executorID, hash string) string { return RefsPrefix + executorID + "/" + hash }

// ParseRefKey splits a key RefKey returns. It checks the executor ID's
// shape and that hash is 64 lowercase hex digits.
func ParseRefKey(key string) (executorID, hash string, ok bool) {
	rest, found := strings.CutPrefix(key, RefsPrefix)
	if !found {
		return "", "", false
	}
	executorID, hash, found = strings.Cut(rest, "/")
	if !found || !isHash(hash) {
		return "", "", false
	}
	if _, valid := parseID(executorID); !valid {
		return "", "", false
	}
	return executorID, hash, true
}

func isHash(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := range len(s) {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := range len(s) {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// digits returns the number of decimal digits of a non-negative n.
func digits(n int) int {
	d := 1
	for n >= 10 {
		n /= 10
		d++
	}
	return d
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
