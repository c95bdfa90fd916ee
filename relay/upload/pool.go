package upload

import "sync"

// bufSize is the size of every pooled buffer: large enough for one syscall
// to move a useful amount, small enough to stay in L2.
const bufSize = 32 << 10

// bufPool holds *[bufSize]byte. Storing a pointer to an array (not a slice)
// keeps Get and Put free of allocations; buffers are not cleared on reuse.
var bufPool = sync.Pool{New: func() any { return new([bufSize]byte) }}

// getBuf takes a buffer from the pool.
func getBuf() *[bufSize]byte { return bufPool.Get().(*[bufSize]byte) }

// putBuf returns a buffer to the pool. b must not be used afterwards.
func putBuf(b *[bufSize]byte) { bufPool.Put(b) }
