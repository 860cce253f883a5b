package jobplot_test

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"image/png"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/gowren/gowren/backends/local"
	"github.com/gowren/gowren/fanout"
	_ "github.com/gowren/gowren/jobplot"
)

var invert = fanout.Register("jobplot_test.invert", func(ctx context.Context, x float64) (float64, error) {
	if x == 0 {
		return 0, errors.New("division by zero")
	}
	if x == 4 && fanout.Task(ctx).Attempt == 0 {
		return 0, fanout.Retryable(errors.New("flaky the first time"))
	}
	return 1 / x, nil
})

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func plottedJob(t *testing.T) fanout.JobStats {
	t.Helper()
	ex := fanout.NewExecutor(local.New(&local.Options{Concurrency: 3}), &fanout.Options{Retries: 2, Logger: quiet})
	t.Cleanup(func() { ex.Close() })
	in := []float64{1, 2, 0, 4, 5, 6, 7, 0, 9, 10}
	j, err := fanout.Start(context.Background(), ex, invert, in)
	if err != nil {
		t.Fatal(err)
	}
	j.Wait(context.Background())
	return j.Stats()
}

func TestWritePlotPNG(t *testing.T) {
	s := plottedJob(t)
	var buf bytes.Buffer
	if err := s.WritePlot(&buf, "png"); err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(&buf)
	if err != nil {
		t.Fatalf("not a PNG: %v", err)
	}
	if b := img.Bounds(); b.Dx() < 500 || b.Dy() < 300 {
		t.Errorf("image of %v", b)
	}
}

func TestWritePlotSVG(t *testing.T) {
	s := plottedJob(t)
	var buf bytes.Buffer
	if err := s.WritePlot(&buf, "svg"); err != nil {
		t.Fatal(err)
	}
	// Well-formed XML, with one line per task in the outcome colours, and
	// one per failed attempt, plus one sample of each in the legend, whose
	// text names them with their counts.
	d := xml.NewDecoder(bytes.NewReader(buf.Bytes()))
	marks := map[string]int{}
	var texts []string
	inText := false
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("SVG does not parse: %v", err)
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			inText = tok.Name.Local == "text"
			if tok.Name.Local != "path" {
				continue
			}
			for _, a := range tok.Attr {
				for _, c := range []string{"#2e8b57", "#c62828", "#e68a00", "#ef9a9a"} {
					if strings.Contains(strings.ToLower(a.Value), "stroke:"+c) {
						marks[c]++
					}
				}
			}
		case xml.CharData:
			if inText {
				texts = append(texts, string(tok))
			}
		case xml.EndElement:
			inText = false
		}
	}
	retried, tries, peak := 0, 0, 0
	for _, ts := range s.PerTask {
		if ts.Outcome == "ok" && ts.Attempts > 1 {
			retried++
		}
		tries += len(ts.FailedTries)
		for _, f := range ts.FailedTries {
			if f.Sent.IsZero() || f.Failed.Before(f.Sent) || f.Reason == "" {
				t.Errorf("task %d: failed try %+v", ts.Index, f)
			}
		}
		if ts.Started.IsZero() || ts.Finished.IsZero() {
			continue
		}
		n := 0 // tasks running when this one started
		for _, o := range s.PerTask {
			if !o.Started.After(ts.Started) && o.Finished.After(ts.Started) {
				n++
			}
		}
		peak = max(peak, n)
	}
	// The flaky task's first attempt, and the one attempt of each failed task.
	if retried != 1 || tries != 1+s.Failed {
		t.Fatalf("%d tasks retried, %d failed tries; want the flaky task and %d failed attempts", retried, tries, 1+s.Failed)
	}
	ok := s.Succeeded - retried
	if marks["#2e8b57"] != ok+1 || marks["#e68a00"] != retried+1 || marks["#c62828"] != s.Failed+1 || marks["#ef9a9a"] != tries+1 {
		t.Errorf("marks %v, want %d ok, %d retried, %d failed, %d failed tries, each plus its legend sample", marks, ok, retried, s.Failed, tries)
	}
	for _, want := range []string{
		fmt.Sprintf("ok (%d)", ok), "ok after retries (1)", fmt.Sprintf("failed (%d)", s.Failed),
		fmt.Sprintf("failed attempt (%d)", tries), fmt.Sprintf("tasks running (peak %d)", peak),
	} {
		if !slices.Contains(texts, want) {
			t.Errorf("no legend entry %q in the SVG's texts %q", want, texts)
		}
	}
}

func TestWritePlotErrors(t *testing.T) {
	if err := (fanout.JobStats{}).WritePlot(io.Discard, "png"); err == nil {
		t.Error("empty stats plotted")
	}
	if err := plottedJob(t).WritePlot(io.Discard, "gif"); err == nil || !strings.Contains(err.Error(), "gif") {
		t.Errorf("gif: %v", err)
	}
}

func TestSavePlot(t *testing.T) {
	s := plottedJob(t)
	dir := t.TempDir()
	png1 := filepath.Join(dir, "t.PNG")
	if err := s.SavePlot(png1); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(png1)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := png.Decode(f); err != nil {
		t.Errorf("%s is not a PNG: %v", png1, err)
	}
	if err := s.SavePlot(filepath.Join(dir, "t.gif")); err == nil || !strings.Contains(err.Error(), "gif") {
		t.Errorf("SavePlot to a .gif: %v, want an error naming the format", err)
	}
}
