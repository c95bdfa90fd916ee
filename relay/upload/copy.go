package upload

import "io"

// Copy copies from src to dst until EOF or an error, like io.Copy, and
// returns the number of bytes copied and the first error (io.EOF is not an
// error). Like io.Copy it lets src.WriteTo or else dst.ReadFrom do the work;
// otherwise it borrows a 32 KiB buffer from a pool instead of allocating one,
// so a steady-state Copy does not allocate.
func Copy(dst io.Writer, src io.Reader) (int64, error) {
	if wt, ok := src.(io.WriterTo); ok {
		return wt.WriteTo(dst)
	}
	if rf, ok := dst.(io.ReaderFrom); ok {
		return rf.ReadFrom(src)
	}
	buf := getBuf()
	defer putBuf(buf)
	return io.CopyBuffer(dst, src, buf[:])
}
