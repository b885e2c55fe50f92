//go:build race

package router

// raceEnabled is true under -race, which adds allocations of its own.
const raceEnabled = true
