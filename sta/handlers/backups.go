package handlers

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/proto"
	"github.com/vdc-project/vdc/sta/backup"
)

// ---- backup_volume, create_snapshot, backup_image ----

// backupVolume: the backup object goes pending → creating → available with
// the checksum, allocation size and object key of what was stored; the
// volume's bytes are a point-in-time snapshot (instant on a reflink store).
// On failure the backup object becomes deleted and whatever was stored of
// it is removed.
func (h *Handlers) backupVolume(ctx context.Context, req proto.StaBackupVolumeRequest) (proto.StaBackupVolumeResponse, error) {
	key, err := h.backupOf(ctx, req.VolumeID, req.BackupObjectID, "")
	return proto.StaBackupVolumeResponse{ObjectKey: key}, err
}

// createSnapshot is backup_volume under its legacy name: the source's
// create_snapshot snapshotted the volume, uploaded the snapshot to the
// backup storage and made the backup object available, which is what
// backup_volume does here (every backup starts with a snapshot).
func (h *Handlers) createSnapshot(ctx context.Context, req proto.StaCreateSnapshotRequest) (proto.StaCreateSnapshotResponse, error) {
	key, err := h.backupOf(ctx, req.VolumeID, req.BackupObjectID, "")
	return proto.StaCreateSnapshotResponse{ObjectKey: key}, err
}

// backupImage backs a boot volume up as an image: the image must be
// creating (deleted: the backup is skipped and its object deleted); after
// the backup object is available the manager makes the image available
// once all its backup objects are (post_process_backup_image). On failure
// the backup object and the image become deleted — the source called
// sta-collector.update_image, which it did not serve; the contract has it.
func (h *Handlers) backupImage(ctx context.Context, req proto.StaBackupImageRequest) (proto.StaBackupImageResponse, error) {
	if req.ImageID == "" {
		return proto.StaBackupImageResponse{}, errs.New(errs.UndefinedImageID, "job without an image id")
	}
	key, err := h.backupOf(ctx, req.VolumeID, req.BackupObjectID, req.ImageID)
	if err != nil {
		return proto.StaBackupImageResponse{ObjectKey: key}, err
	}
	ok, err := h.coll.PostProcessBackupImage(ctx, req.ImageID)
	if err != nil {
		return proto.StaBackupImageResponse{ObjectKey: key}, annotate(err, "post-process image "+req.ImageID)
	}
	if !ok {
		h.logger.InfoContext(ctx, "image waits for its other backup objects", "image_id", req.ImageID)
	}
	return proto.StaBackupImageResponse{ObjectKey: key}, nil
}

// backupOf backs volume volID up into backup object boID (for image
// imageID, if set) and returns the object key.
func (h *Handlers) backupOf(ctx context.Context, volID, boID, imageID string) (string, error) {
	if volID == "" || boID == "" {
		return "", errs.New(errs.UndefinedBackupObject, "job without a volume or backup object id")
	}
	unlock, err := h.locks.Lock(ctx, volID)
	if err != nil {
		return "", err
	}
	defer unlock()
	bo, err := h.coll.GetBackupObject(ctx, boID)
	if err != nil {
		return "", annotate(err, "get backup object "+boID)
	}
	key := bo.ObjectKey
	if key == "" {
		key = bo.ID
	}
	switch bo.State {
	case proto.BackupObjectAvailable:
		// Done before (a redelivery).
		return key, nil
	case proto.BackupObjectDeleted, proto.BackupObjectPurged:
		return "", errs.New(errs.InvalidBackupObjectState, "backup object %s is %s; not backing up into it", boID, bo.State)
	}
	fail := func(cause error) (string, error) { return "", h.failBackup(ctx, bo, imageID, cause) }
	if imageID != "" {
		img, err := h.coll.GetImage(ctx, imageID)
		if err != nil {
			return fail(annotate(err, "get image "+imageID))
		}
		switch img.State {
		case "available":
			return key, nil
		case "deleted":
			return fail(errs.New(errs.UnknownImage, "image %s was deleted; backup skipped", imageID))
		}
	}
	v, err := h.coll.GetVolume(ctx, volID)
	if err != nil {
		return fail(annotate(err, "get volume "+volID))
	}
	if err := h.checkNode(v); err != nil {
		return fail(err)
	}
	switch v.State {
	case proto.VolumeAvailable, proto.VolumeAttaching, proto.VolumeAttached, proto.VolumeDetaching:
	default:
		return fail(errs.New(errs.InvalidVolumeState, "volume %s is %s; a backup wants it available or attached", volID, v.State))
	}
	if bo.State != proto.BackupObjectCreating {
		if err := h.coll.UpdateBackupObject(ctx, proto.UpdateBackupObjectRequest{BackupObjectID: boID, State: ptr(proto.BackupObjectCreating)}); err != nil {
			return "", annotate(err, "update backup object "+boID+" to creating")
		}
	}
	uri, err := backup.Locate(bo, h.cfg.LocalBackupStorageID, h.cfg.LocalBackupPath)
	if err != nil {
		return fail(err)
	}
	sum, n, err := h.upload(ctx, volID, bo, uri)
	if err != nil {
		return fail(err)
	}
	err = h.coll.UpdateBackupObject(ctx, proto.UpdateBackupObjectRequest{BackupObjectID: boID,
		State: ptr(proto.BackupObjectAvailable), Checksum: &sum, AllocationSize: &n, ObjectKey: &key})
	if err != nil {
		// The update may have been applied with its answer lost.
		actx, cancel := h.afterwards(ctx)
		now, rerr := h.coll.GetBackupObject(actx, boID)
		cancel()
		switch {
		case rerr != nil:
			return "", errors.Join(annotate(err, "update backup object "+boID+" to available"),
				annotate(rerr, "read it back; the stored object is kept"))
		case now.State != proto.BackupObjectAvailable:
			return fail(annotate(err, "update backup object "+boID+" to available"))
		}
	}
	h.logger.InfoContext(ctx, "volume backed up", "volume_id", volID, "backup_object_id", boID,
		"uri", uri, "bytes", n, "md5", sum)
	return key, nil
}

// failBackup: unless interrupted, the stored object is removed and the
// backup object (and the image) become deleted.
func (h *Handlers) failBackup(ctx context.Context, bo *proto.BackupObjectView, imageID string, cause error) error {
	if interrupted(ctx) {
		return cause
	}
	actx, cancel := h.afterwards(ctx)
	defer cancel()
	h.logger.WarnContext(ctx, "backup failed", "backup_object_id", bo.ID, "error", cause)
	errList := []error{cause}
	if uri, err := backup.Locate(bo, h.cfg.LocalBackupStorageID, h.cfg.LocalBackupPath); err == nil {
		if err := h.cfg.Backups.Delete(actx, uri); err != nil {
			errList = append(errList, annotate(err, "remove the partial backup "+uri))
		}
	}
	if err := h.coll.UpdateBackupObject(actx, proto.UpdateBackupObjectRequest{BackupObjectID: bo.ID, State: ptr(proto.BackupObjectDeleted)}); err != nil {
		errList = append(errList, annotate(err, "update backup object "+bo.ID+" to deleted"))
	}
	if imageID != "" {
		if err := h.coll.UpdateImage(actx, proto.UpdateImageRequest{ImageID: imageID, State: ptr("deleted")}); err != nil && !errs.Is(err, errs.UnknownImage) {
			errList = append(errList, annotate(err, "update image "+imageID+" to deleted"))
		}
	}
	return &errs.Error{Kind: errs.KindOf(cause), Err: errors.Join(errList...),
		Msg: "backup into " + bo.ID + " failed; the backup object was deleted"}
}

// upload stores a snapshot of the volume at uri in the object's container
// format and returns the md5 and length of what was stored. A plain object
// on this node is the snapshot itself (instant on a reflink store in the
// same filesystem); anything else streams the snapshot through the
// encoder to the storage.
func (h *Handlers) upload(ctx context.Context, volID string, bo *proto.BackupObjectView, uri string) (string, int64, error) {
	if path, ok := backup.LocalPath(uri); ok && backup.Plain(bo.ContainerFormat) {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return "", 0, err
		}
		// Left by an earlier delivery of this job.
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return "", 0, err
		}
		if _, err := h.store.Snapshot(ctx, volID, path); err != nil {
			return "", 0, annotate(err, "snapshot volume "+volID+" to "+path)
		}
		sum, n, err := backup.FileSum(ctx, path)
		if err != nil {
			return "", 0, annotate(err, "checksum "+path)
		}
		return sum, n, nil
	}
	tmp := filepath.Join(h.cfg.TmpDir, fmt.Sprintf(".%s-%s.snap", bo.ID, randomHex()))
	size, err := h.store.Snapshot(ctx, volID, tmp)
	if err != nil {
		return "", 0, annotate(err, "snapshot volume "+volID)
	}
	defer os.Remove(tmp)
	f, err := os.Open(tmp)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()

	var read atomic.Int64
	stop := h.reportProgress(ctx, bo.ID, size, &read)
	defer stop()
	sum := backup.NewSum()
	pr, pw := io.Pipe()
	encErr := make(chan error, 1)
	go func() {
		enc, err := backup.Encode(io.MultiWriter(pw, sum), bo.ContainerFormat, volID+".raw", size)
		if err == nil {
			_, err = io.Copy(enc, &countingReader{r: f, n: &read})
			if cerr := enc.Close(); err == nil {
				err = cerr
			}
		}
		pw.CloseWithError(err)
		encErr <- err
	}()
	putSize := int64(-1)
	if backup.Plain(bo.ContainerFormat) {
		putSize = size
	}
	err = h.cfg.Backups.Put(ctx, uri, pr, putSize)
	pr.CloseWithError(errors.New("upload ended")) // unblocks the encoder if Put stopped early
	if eerr := <-encErr; err == nil && eerr != nil {
		err = eerr
	}
	if err != nil {
		return "", 0, annotate(err, "upload volume "+volID+" to "+uri)
	}
	return sum.Hex(), sum.Len(), nil
}

func randomHex() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

type countingReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// reportProgress sends the backup object's progress every
// ProgressInterval until stop is called. Progress is informational: a
// report that fails is only logged.
func (h *Handlers) reportProgress(ctx context.Context, boID string, size int64, read *atomic.Int64) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(h.cfg.ProgressInterval)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
			}
			pct := 100.0
			if size > 0 {
				pct = min(99.9, float64(read.Load())*100/float64(size))
			}
			rctx, cancel := context.WithTimeout(ctx, h.cfg.ProgressInterval)
			err := h.coll.UpdateBackupObject(rctx, proto.UpdateBackupObjectRequest{BackupObjectID: boID, Progress: &pct})
			cancel()
			if err != nil {
				h.logger.DebugContext(ctx, "report backup progress", "backup_object_id", boID, "error", err)
			}
		}
	})
	return func() { close(done); wg.Wait() }
}

// ---- delete_snapshot ----

// deleteSnapshot removes the stored bytes of a backup object (what
// create_snapshot or a backup made) and marks it purged. The source's verb
// referenced an undefined storage service and always failed. An object
// being made is refused; a purged or unknown one is done already.
func (h *Handlers) deleteSnapshot(ctx context.Context, req proto.StaDeleteSnapshotRequest) (proto.StaDeleteSnapshotResponse, error) {
	id := req.BackupObjectID
	if id == "" {
		return proto.StaDeleteSnapshotResponse{}, errs.New(errs.UndefinedBackupObject, "job without a backup object id")
	}
	unlock, err := h.locks.Lock(ctx, id)
	if err != nil {
		return proto.StaDeleteSnapshotResponse{}, err
	}
	defer unlock()
	bo, err := h.coll.GetBackupObject(ctx, id)
	if errs.Is(err, errs.UnknownBackupObject) {
		return proto.StaDeleteSnapshotResponse{}, nil
	}
	if err != nil {
		return proto.StaDeleteSnapshotResponse{}, annotate(err, "get backup object "+id)
	}
	switch bo.State {
	case proto.BackupObjectPurged:
		return proto.StaDeleteSnapshotResponse{}, nil
	case proto.BackupObjectAvailable, proto.BackupObjectDeleted:
	default:
		return proto.StaDeleteSnapshotResponse{}, errs.New(errs.InvalidBackupObjectState,
			"backup object %s is %s; delete_snapshot wants it available or deleted", id, bo.State)
	}
	uri, err := backup.Locate(bo, h.cfg.LocalBackupStorageID, h.cfg.LocalBackupPath)
	if err != nil {
		return proto.StaDeleteSnapshotResponse{}, err
	}
	if err := h.cfg.Backups.Delete(ctx, uri); err != nil {
		return proto.StaDeleteSnapshotResponse{}, annotate(err, "delete backup object "+id+" at "+uri)
	}
	if err := h.coll.UpdateBackupObject(ctx, proto.UpdateBackupObjectRequest{BackupObjectID: id, State: ptr(proto.BackupObjectPurged)}); err != nil {
		return proto.StaDeleteSnapshotResponse{}, annotate(err, "update backup object "+id+" to purged")
	}
	return proto.StaDeleteSnapshotResponse{}, nil
}
