package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/diembft/diembft/olympus/config"
)

// TestScenarioLibrary: every config in configs/scenarios parses, says what
// it expects, and keeps within f unless it expects to fail.
func TestScenarioLibrary(t *testing.T) {
	dir := filepath.Join("..", "..", "configs", "scenarios")
	scs, err := readScenarios(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(scs) < 15 {
		t.Fatalf("%d scenarios", len(scs))
	}
	types := map[string]bool{}
	f2 := 0
	for _, sc := range scs {
		cfg, err := config.Load(sc.path)
		if err != nil {
			t.Fatalf("%s: %v", sc.name, err)
		}
		if cfg.Name != sc.name {
			t.Errorf("%s: config name %q differs from the file name", sc.path, cfg.Name)
		}
		for _, f := range cfg.Failures {
			types[f.Type] = true
		}
		if cfg.Committee.F == 2 {
			f2++
		}
	}
	for _, ty := range []string{"drop", "delay", "crash", "pause", "partition", "set_attr", "equivocate"} {
		if !types[ty] {
			t.Errorf("no scenario injects %s", ty)
		}
	}
	if f2 < 3 {
		t.Errorf("%d scenarios with f = 2", f2)
	}
}

func TestReadScenarios(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("b.toml", "# expect: fail\nname = \"b\"\n")
	write("a.txt", "#expect:ok\nt = 1\n")
	write("notes.md", "# expect: nothing\n")
	scs, err := readScenarios(dir, "")
	if err != nil || len(scs) != 2 || scs[0].name != "a" || scs[0].expect != "ok" || scs[1].expect != "fail" {
		t.Fatalf("%+v, %v", scs, err)
	}
	if scs, err := readScenarios(dir, "^b"); err != nil || len(scs) != 1 {
		t.Fatalf("--run ^b: %+v, %v", scs, err)
	}
	write("c.toml", "name = \"c\"\n")
	if _, err := readScenarios(dir, ""); err == nil || !strings.Contains(err.Error(), "expect: ok") {
		t.Fatalf("a scenario without an expectation: %v", err)
	}
}
