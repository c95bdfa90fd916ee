package store

import clientv3 "go.etcd.io/etcd/client/v3"

// maxTxnBytes bounds the keys and values one transaction carries: etcd
// refuses a request over its --max-request-bytes (1.5 MiB by default), and
// a tenant's values are up to 64 KiB each (an error report, sealed a little
// more), so 128 of them would not fit.
const maxTxnBytes = 1 << 20

// txnBatches splits groups of operations (each group the keys of one
// source key, which go together) into transactions of at most maxTxnOps
// operations and maxTxnBytes bytes of keys and values. A group over either
// bound alone is a transaction of its own (etcd then judges it).
func txnBatches(groups [][]clientv3.Op) [][][]clientv3.Op {
	var out [][][]clientv3.Op
	for len(groups) > 0 {
		n, ops, size := 0, 0, 0
		for n < len(groups) {
			gOps, gSize := len(groups[n]), opsBytes(groups[n])
			if n > 0 && (ops+gOps > maxTxnOps || size+gSize > maxTxnBytes) {
				break
			}
			ops, size = ops+gOps, size+gSize
			n++
		}
		out = append(out, groups[:n])
		groups = groups[n:]
	}
	return out
}

// singles makes each operation a group of its own, for txnBatches.
func singles(ops []clientv3.Op) [][]clientv3.Op {
	out := make([][]clientv3.Op, len(ops))
	for i := range ops {
		out[i] = ops[i : i+1]
	}
	return out
}

// flatten joins groups into one list of operations.
func flatten(groups [][]clientv3.Op) []clientv3.Op {
	var ops []clientv3.Op
	for _, g := range groups {
		ops = append(ops, g...)
	}
	return ops
}

func opsBytes(ops []clientv3.Op) int {
	n := 0
	for _, op := range ops {
		n += len(op.KeyBytes()) + len(op.ValueBytes()) + len(op.RangeBytes())
	}
	return n
}
