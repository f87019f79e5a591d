package client

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// LoadOrCreateKey reads a client signing key from path, or creates a fresh one
// there (mode 0600) when the file does not exist, so that a client started
// again with the same --key keeps its identity. The file holds the 32-byte
// ed25519 seed in hex, like a replica's consensus.key; a 64-byte hex private
// key is accepted too. created reports whether the key is new.
func LoadOrCreateKey(path string) (key ed25519.PrivateKey, created bool, err error) {
	raw, err := os.ReadFile(path)
	switch {
	case err == nil:
		key, err := ParseKey(raw)
		if err != nil {
			return nil, false, fmt.Errorf("key file %s: %w", path, err)
		}
		return key, false, nil
	case !errors.Is(err, fs.ErrNotExist):
		return nil, false, fmt.Errorf("key file: %w", err)
	}
	_, key, err = ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, false, fmt.Errorf("generate key: %w", err)
	}
	if dir := filepath.Dir(path); dir != "." {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, false, fmt.Errorf("key file: %w", err)
		}
	}
	// O_EXCL: two clients started together on the same new path must not
	// both believe they own the key they generated.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, false, fmt.Errorf("key file: %w", err)
	}
	_, err = fmt.Fprintln(f, hex.EncodeToString(key.Seed()))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return nil, false, fmt.Errorf("key file: %w", err)
	}
	return key, true, nil
}

// ParseKey parses a hex ed25519 seed (32 bytes) or private key (64 bytes);
// surrounding whitespace is ignored.
func ParseKey(text []byte) (ed25519.PrivateKey, error) {
	b, err := hex.DecodeString(string(bytes.TrimSpace(text)))
	if err != nil {
		return nil, errors.New("not a hex ed25519 key")
	}
	switch len(b) {
	case ed25519.SeedSize:
		return ed25519.NewKeyFromSeed(b), nil
	case ed25519.PrivateKeySize:
		key := ed25519.PrivateKey(b)
		if !bytes.Equal(ed25519.NewKeyFromSeed(key.Seed()), key) {
			return nil, errors.New("ed25519 private key does not match its public half")
		}
		return key, nil
	}
	return nil, fmt.Errorf("ed25519 key of %d bytes, want a %d-byte seed", len(b), ed25519.SeedSize)
}
