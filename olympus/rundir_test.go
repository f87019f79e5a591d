package olympus

import (
	"os"
	"strings"
	"sync"
	"testing"
)

// TestNewRunDirUnique: runs started in the same second, concurrently too,
// each get a directory of their own.
func TestNewRunDirUnique(t *testing.T) {
	t.Chdir(t.TempDir())
	const n = 8
	dirs := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			d, err := NewRunDir("x")
			if err != nil {
				t.Error(err)
			}
			dirs[i] = d
		})
	}
	wg.Wait()
	seen := map[string]bool{}
	for _, d := range dirs {
		if seen[d] || !strings.HasPrefix(d, "runs/x-") {
			t.Fatalf("directories %v: %q repeated or misnamed", dirs, d)
		}
		seen[d] = true
		if st, err := os.Stat(d); err != nil || !st.IsDir() {
			t.Fatalf("%s: %v", d, err)
		}
	}
}
