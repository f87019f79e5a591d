package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestOutDirMustBeEmpty: run, lab, bench and scenarios refuse an --out DIR
// that exists and is not empty with one usage line naming it, and touch
// nothing in it. A finished run (report.json) was refused before, but the
// leftovers of an interrupted run (homes/, logs/, no report.json) were
// reused: Olympus refused the old homes and the report mixed in stale data.
func TestOutDirMustBeEmpty(t *testing.T) {
	bins := fakeBins(t)
	cfg := writeConfig(t, "name = \"x\"\n")
	scenarioDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(scenarioDir, "a.toml"), []byte("# expect: ok\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	layouts := map[string][]string{
		"interrupted run": {"homes/replica-0/ledger", "logs/olympus.log", "run.json"},
		"finished run":    {"report.json", "ledgers/replica-0.ledger"},
		"bench":           {"bench.json"},
		"any file":        {"notes.txt"},
		"empty subdir":    {"sub/"},
	}
	commands := map[string]func(dir string) []string{
		"run":   func(dir string) []string { return []string{"run", cfg, "--out", dir, "--bin-dir", bins} },
		"bench": func(dir string) []string { return []string{"bench", "--out", dir, "--bin-dir", bins} },
		"scenarios": func(dir string) []string {
			return []string{"scenarios", scenarioDir, "--out", dir, "--bin-dir", t.TempDir()}
		},
	}
	if labCheck() == nil {
		commands["lab"] = func(dir string) []string { return []string{"lab", cfg, "--out", dir, "--bin-dir", bins} }
	} else {
		t.Log("lab not checked: network namespaces are unavailable here")
	}
	for name, files := range layouts {
		for cmdName, args := range commands {
			dir := filepath.Join(t.TempDir(), "out")
			for _, f := range files {
				p := filepath.Join(dir, f)
				if strings.HasSuffix(f, "/") {
					_ = os.MkdirAll(p, 0o755)
					continue
				}
				_ = os.MkdirAll(filepath.Dir(p), 0o755)
				if err := os.WriteFile(p, []byte("old\n"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			before := listTree(t, dir)
			var stdout, stderr bytes.Buffer
			resetFlags(t)
			code := execute(args(dir), &stdout, &stderr)
			want := "diembft: --out " + dir + " is not empty; choose another directory or remove it"
			lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
			if code != exitUsage || len(lines) != 1 || !strings.HasPrefix(lines[0], want) {
				t.Errorf("%s into a DIR holding %s: exit %d, stderr %q; want exit 2 and %q", cmdName, name, code, stderr.String(), want)
			}
			if after := listTree(t, dir); after != before {
				t.Errorf("%s into a DIR holding %s changed it:\n%s\nwas\n%s", cmdName, name, after, before)
			}
		}
	}

	// The command's own output file does not count: ../shared/tools/check-run
	// runs `diembft run CONFIG --out D > D/stdout 2>&1` into a fresh D.
	dir := t.TempDir()
	out, err := os.Create(filepath.Join(dir, "stdout"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	resetFlags(t)
	// The verdict of the fake run is not the point here (exit 0 or 1): it
	// ran, and reported.
	code := execute([]string{"run", cfg, "--out", dir, "--bin-dir", bins}, out, out)
	if _, err := os.Stat(filepath.Join(dir, reportFile)); code == exitUsage || err != nil {
		data, _ := os.ReadFile(out.Name())
		t.Fatalf("run --out D > D/stdout: exit %d, %v:\n%s", code, err, data)
	}
	// But only its own: another file of that name is stale data.
	stale := t.TempDir()
	_ = os.WriteFile(filepath.Join(stale, "stdout"), nil, 0o644)
	if _, err := checkOutDir(stale, out, out); err == nil || !strings.Contains(err.Error(), "is not empty") {
		t.Errorf("checkOutDir(a DIR with a stdout file that is not ours) = %v", err)
	}

	// A file is refused too; a missing or empty directory is fine.
	file := filepath.Join(t.TempDir(), "file")
	_ = os.WriteFile(file, nil, 0o644)
	if _, err := checkOutDir(file); err == nil || !isUsage(err) || !strings.Contains(err.Error(), "--out "+file+" is not a directory") {
		t.Errorf("checkOutDir(a file) = %v", err)
	}
	for _, dir := range []string{t.TempDir(), filepath.Join(t.TempDir(), "new")} {
		if abs, err := checkOutDir(dir); err != nil || abs != dir {
			t.Errorf("checkOutDir(%s) = %q, %v", dir, abs, err)
		}
	}
}

// listTree lists the files under dir with their sizes.
func listTree(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		fmt.Fprintf(&b, "%s %v %d\n", rel, info.Mode(), info.Size())
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}
