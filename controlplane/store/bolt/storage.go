package bolt

import (
	"errors"
	"syscall"

	bolterrors "go.etcd.io/bbolt/errors"

	cp "github.com/rampart-fw/rampart/controlplane"
)

// Storage faults (#13.10). A write that fails because the disk is full or
// failing is not a bug: the API answers 503 storage_unavailable, and the
// log names the cause. storageFault classifies by type (the errno inside
// bbolt's *fs.PathError, bbolt's own sentinel errors), never by text.

// storageErrnos are the errors of a file system that cannot take a write.
var storageErrnos = []syscall.Errno{syscall.ENOSPC, syscall.EDQUOT, syscall.EIO, syscall.EROFS, syscall.EFBIG}

// storageFault returns err as a *controlplane.StorageError when it is a
// failure of the storage itself, else unchanged.
func storageFault(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := errors.AsType[*cp.Error](err); ok {
		return err
	}
	if isStorageFault(err) {
		return &cp.StorageError{Op: "write to the database", Err: err}
	}
	return err
}

func isStorageFault(err error) bool {
	if errno, ok := errors.AsType[syscall.Errno](err); ok {
		for _, e := range storageErrnos {
			if errno == e {
				return true
			}
		}
	}
	return errors.Is(err, bolterrors.ErrDatabaseNotOpen) || errors.Is(err, bolterrors.ErrDatabaseReadOnly) || errors.Is(err, errClosed)
}
