package protocol

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestPureImports fails if a non-test package under protocol/ depends, even
// indirectly, on libp2p or our networked packages, or imports os, net or
// os/exec itself (DESIGN §2). The standard library reaches os indirectly
// (fmt does), so only direct imports of os are forbidden.
func TestPureImports(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}}: {{join .Deps " "}}|{{join .Imports " "}}`, "./...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	forbidden := []string{"github.com/libp2p/", "github.com/diembft/diembft/p2p", "github.com/diembft/diembft/node", "github.com/diembft/diembft/olympus"}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		pkg, rest, _ := strings.Cut(line, ": ")
		deps, imports, _ := strings.Cut(rest, "|")
		for _, d := range strings.Fields(deps) {
			for _, f := range forbidden {
				if strings.HasPrefix(d, f) {
					t.Errorf("%s depends on %s", pkg, d)
				}
			}
		}
		for _, d := range strings.Fields(imports) {
			if d == "os" || d == "net" || d == "os/exec" {
				t.Errorf("%s imports %s", pkg, d)
			}
		}
	}
}

// TestNoClockNoGoroutines scans the non-test sources under protocol/ for the
// wall clock, sleeps and goroutines.
func TestNoClockNoGoroutines(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", `{{$d := .Dir}}{{range .GoFiles}}{{$d}}/{{.}} {{end}}`, "./...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	banned := []string{"time.Now(", "time.Sleep(", "time.After(", "time.AfterFunc(", "time.NewTimer(", "time.NewTicker(", "go func", "\tgo "}
	for _, f := range strings.Fields(string(out)) {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range banned {
			if strings.Contains(string(src), b) {
				t.Errorf("%s uses %q", f, strings.TrimSpace(b))
			}
		}
	}
}
