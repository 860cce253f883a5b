package jobplot_test

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"image/png"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/gowren/gowren/backends/local"
	"github.com/gowren/gowren/fanout"
	_ "github.com/gowren/gowren/jobplot"
)

var invert = fanout.Register("jobplot_test.invert", func(_ context.Context, x float64) (float64, error) {
	if x == 0 {
		return 0, errors.New("division by zero")
	}
	return 1 / x, nil
})

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func plottedJob(t *testing.T) fanout.JobStats {
	t.Helper()
	ex := fanout.NewExecutor(local.New(&local.Options{Concurrency: 3}), &fanout.Options{Retries: -1, Logger: quiet})
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
	// Well-formed XML, with one line per task in the outcome colours.
	d := xml.NewDecoder(bytes.NewReader(buf.Bytes()))
	marks := map[string]int{}
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("SVG does not parse: %v", err)
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "path" {
			for _, a := range se.Attr {
				for _, c := range []string{"#2e8b57", "#c62828"} {
					if strings.Contains(strings.ToLower(a.Value), "stroke:"+c) {
						marks[c]++
					}
				}
			}
		}
	}
	if marks["#2e8b57"] != s.Succeeded || marks["#c62828"] != s.Failed {
		t.Errorf("marks %v, want %d ok and %d failed", marks, s.Succeeded, s.Failed)
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
