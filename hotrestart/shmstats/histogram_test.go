package shmstats

import (
	"slices"
	"testing"
	"time"

	"github.com/edgeproxy/edge/edge/stats"
)

// TestHistogramSurvivesRestart: a histogram's buckets and sum are counter
// slots in the region, so a second mapping (the hot restart child)
// registering the same histogram adds to the parent's counts, and they
// outlive the parent's mapping.
func TestHistogramSurvivesRestart(t *testing.T) {
	base := testBase(t)
	parent := mustOpen(t, base, testSlots)
	lbl := stats.Label{Name: "cluster", Value: "api"}
	hp := stats.NewStoreWith(parent.Slot).Histogram("edge_cluster_upstream_rq_time", "", stats.DefaultBounds(), lbl)
	for range 3 {
		hp.Observe(2 * time.Millisecond) // (1ms, 5ms]
	}

	child := mustOpen(t, base, testSlots)
	hc := stats.NewStoreWith(child.Slot).Histogram("edge_cluster_upstream_rq_time", "", stats.DefaultBounds(), lbl)
	hc.Observe(2 * time.Hour) // overflow
	if err := parent.Close(); err != nil {
		t.Fatal(err)
	}

	snap := hc.Snapshot()
	want := make([]uint64, len(stats.DefaultBounds())+1)
	want[2], want[len(want)-1] = 3, 1
	if !slices.Equal(snap.Counts, want) {
		t.Errorf("child's buckets = %v, want %v", snap.Counts, want)
	}
	if snap.Count != 4 || snap.Sum != 2*time.Hour+6*time.Millisecond {
		t.Errorf("child's count %d sum %v, want 4 and 2h0m0.006s", snap.Count, snap.Sum)
	}
}
