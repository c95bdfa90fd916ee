package ratelimit

// node is one entry of an lru: its key, its place in the recency list, when
// it was last used (nanoseconds since the owner's epoch) and its value.
type node[V any] struct {
	prev, next *node[V]
	key        string
	touched    int64
	val        V
}

// lru is a map with a bound and a recency list: the front is the most
// recently used node, the back the least. It is not safe for concurrent use
// (its shard's mutex guards it) and must not be copied after init.
type lru[V any] struct {
	items map[string]*node[V]
	root  node[V] // sentinel: root.next is the front, root.prev the back
	limit int
}

func (l *lru[V]) init(limit int) {
	l.items = make(map[string]*node[V])
	l.root.next, l.root.prev = &l.root, &l.root
	l.limit = limit
}

func (l *lru[V]) len() int { return len(l.items) }

// get returns key's node or nil. It does not allocate.
func (l *lru[V]) get(key []byte) *node[V] { return l.items[string(key)] }

// touch marks n as used at tick and moves it to the front.
func (l *lru[V]) touch(n *node[V], tick int64) {
	n.touched = tick
	if l.root.next != n {
		l.unlink(n)
		l.pushFront(n)
	}
}

// add inserts key, which must be absent, at the front with a zero value.
// When the lru is full it evicts the back node first (and reuses it).
func (l *lru[V]) add(key []byte, tick int64) (n *node[V], evicted bool) {
	if len(l.items) >= l.limit {
		n = l.root.prev
		l.unlink(n)
		delete(l.items, n.key)
		*n = node[V]{}
		evicted = true
	} else {
		n = new(node[V])
	}
	n.key = string(key)
	n.touched = tick
	l.items[n.key] = n
	l.pushFront(n)
	return n, evicted
}

// remove deletes n, which must be in l.
func (l *lru[V]) remove(n *node[V]) {
	l.unlink(n)
	delete(l.items, n.key)
	n.prev, n.next = nil, nil
}

// back returns the least recently used node, or nil when l is empty.
func (l *lru[V]) back() *node[V] {
	if l.root.prev == &l.root {
		return nil
	}
	return l.root.prev
}

// prevOf returns the node used just more recently than n, or nil.
func (l *lru[V]) prevOf(n *node[V]) *node[V] {
	if n.prev == &l.root {
		return nil
	}
	return n.prev
}

// pruneBack removes nodes from the back while expired says so, at most max
// of them (max < 0: no bound), and returns how many it removed. It suits
// owners whose expiry follows recency (idle TTL).
func (l *lru[V]) pruneBack(max int, expired func(*node[V]) bool) int {
	removed := 0
	for n := l.back(); n != nil && removed != max && expired(n); n = l.back() {
		l.remove(n)
		removed++
	}
	return removed
}

// pruneAll removes every node expired says so and returns how many.
func (l *lru[V]) pruneAll(expired func(*node[V]) bool) int {
	removed := 0
	for n := l.back(); n != nil; {
		p := l.prevOf(n)
		if expired(n) {
			l.remove(n)
			removed++
		}
		n = p
	}
	return removed
}

func (l *lru[V]) unlink(n *node[V]) {
	n.prev.next = n.next
	n.next.prev = n.prev
}

func (l *lru[V]) pushFront(n *node[V]) {
	n.prev = &l.root
	n.next = l.root.next
	l.root.next.prev = n
	l.root.next = n
}
