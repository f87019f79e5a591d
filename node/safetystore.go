package node

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/diembft/diembft/protocol/safety"
)

// safetyStore keeps the safety data in one file replaced atomically: write a
// temporary file, fsync it, rename it over the old one, fsync the directory.
// A crash at any point leaves either the old or the new state, never a mix.
type safetyStore struct {
	dir, path string
}

func openSafetyStore(home string) (*safetyStore, safety.State, error) {
	s := &safetyStore{dir: home, path: filepath.Join(home, "safety.json")}
	var st safety.State
	data, err := os.ReadFile(s.path)
	if os.IsNotExist(err) {
		return s, st, nil
	}
	if err != nil {
		return nil, st, fmt.Errorf("safety data: %w", err)
	}
	if err := json.Unmarshal(data, &st); err != nil {
		return nil, st, fmt.Errorf("safety data %s: %w", s.path, err)
	}
	return s, st, nil
}

func (s *safetyStore) save(st safety.State) error {
	data, err := json.Marshal(st)
	if err != nil {
		return err
	}
	tmp := s.path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, s.path); err != nil {
		return err
	}
	d, err := os.Open(s.dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
