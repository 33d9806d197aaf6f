// Package atomicfile writes files that a reader never sees half-written, for the CSV sink, the
// snapshots and the sandboxes' state files alike.
package atomicfile

import (
	"io"
	"os"
	"path/filepath"
)

// Write writes path through a temp file in the same directory: write, fsync, rename, fsync the
// directory. A reader never sees a partial file, and a crash leaves at most a temp file.
func Write(path string, write func(io.Writer) error) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(f.Name())
		}
	}()
	if err = write(f); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(f.Name(), path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
