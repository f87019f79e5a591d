package olympus

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// NewRunDir creates and returns runs/<prefix>-<YYYYMMDD-HHMMSS>, the default
// directory of a run, bench or scenario batch, adding -2, -3, ... when one
// of that second exists already: runs started within the same second (a
// loop over seeds) each get their own, also when started concurrently
// (os.Mkdir claims a name atomically).
func NewRunDir(prefix string) (string, error) {
	if err := os.MkdirAll("runs", 0o755); err != nil {
		return "", err
	}
	base := filepath.Join("runs", prefix+"-"+time.Now().Format("20060102-150405"))
	dir := base
	for i := 2; ; i++ {
		err := os.Mkdir(dir, 0o755)
		if err == nil {
			return dir, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return "", err
		}
		dir = fmt.Sprintf("%s-%d", base, i)
	}
}
