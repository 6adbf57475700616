package bolt

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"

	cp "github.com/rampart-fw/rampart/controlplane"
)

// This file is the layout of the file (see the package doc): buckets,
// keys, and the encodings of what is stored in them.

func kindBucket(kind string) []byte {
	if kind == cp.KindSecurityGroup {
		return bucketGroups
	}
	return bucketLists
}

func orgBucket(tx *bolt.Tx, org string, create bool) (*bolt.Bucket, error) {
	orgs := tx.Bucket(bucketOrgs)
	if !create {
		return orgs.Bucket([]byte(org)), nil
	}
	b, err := orgs.CreateBucketIfNotExists([]byte(org))
	if err != nil {
		return nil, err
	}
	for _, name := range [][]byte{bucketGroups, bucketLists, bucketRefs, bucketSites, bucketSiteData, bucketSync, bucketReports, bucketMembers, bucketAudit, bucketAuditRes, bucketHistory} {
		if _, err := b.CreateBucketIfNotExists(name); err != nil {
			return nil, err
		}
	}
	return b, nil
}

func key(parts ...string) []byte {
	var b bytes.Buffer
	for i, p := range parts {
		if i > 0 {
			b.WriteByte(0)
		}
		b.WriteString(p)
	}
	return b.Bytes()
}

func deadlineKey(t time.Time, org, kind, id string) []byte {
	k := make([]byte, 8, 8+len(org)+len(kind)+len(id)+2)
	binary.BigEndian.PutUint64(k, uint64(t.UnixNano()))
	return append(k, key(org, kind, id)...)
}

func getJSON[T any](b *bolt.Bucket, id string) (*T, error) {
	if b == nil {
		return nil, nil
	}
	v := b.Get([]byte(id))
	if v == nil {
		return nil, nil
	}
	t := new(T)
	if err := json.Unmarshal(v, t); err != nil {
		return nil, fmt.Errorf("decode %s: %w", id, err)
	}
	return t, nil
}

func putJSON(b *bolt.Bucket, id string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s: %w", id, err)
	}
	return b.Put([]byte(id), data)
}

func sub(org *bolt.Bucket, name []byte) *bolt.Bucket {
	if org == nil {
		return nil
	}
	return org.Bucket(name)
}

// withNewline returns b with a newline just past its end, within its
// capacity and nothing after: the API can then write the answer and its
// closing newline in one write without copying it.
func withNewline(b []byte) []byte {
	return slices.Clip(append(b, '\n'))[:len(b)]
}

// get returns the stored JSON of a group or prefix list, nil if there is
// none.
func get(ob *bolt.Bucket, bucket []byte, id string) []byte {
	b := sub(ob, bucket)
	if b == nil {
		return nil
	}
	if g := b.Bucket([]byte(id)); g != nil { // a group: a bucket of its own
		return g.Get(keyGroupJSON)
	}
	return b.Get([]byte(id))
}

var (
	keyGroupJSON  = []byte("json")
	keyGroupIndex = []byte("index")
)

// getGroup returns a group's stored JSON and index; nil when there is no
// such group.
func getGroup(ob *bolt.Bucket, id string) (raw, idx []byte) {
	if g := sub(sub(ob, bucketGroups), []byte(id)); g != nil {
		return g.Get(keyGroupJSON), g.Get(keyGroupIndex)
	}
	return nil, nil
}

// putGroup stores a group's JSON and index in its own bucket.
func putGroup(ob *bolt.Bucket, id string, raw, idx []byte) error {
	g, err := ob.Bucket(bucketGroups).CreateBucketIfNotExists([]byte(id))
	if err != nil {
		return err
	}
	if err := g.Put(keyGroupJSON, raw); err != nil {
		return err
	}
	return g.Put(keyGroupIndex, idx)
}

// deleteGroup deletes a group's record.
func deleteGroup(ob *bolt.Bucket, id string) error {
	return ob.Bucket(bucketGroups).DeleteBucket([]byte(id))
}

// encodeGroupIndex writes what a replace needs of a group: its sites and,
// per rule, id, direction, protocol, port and address. Strings are
// uvarint-length-prefixed; protocol is a uvarint.
func encodeGroupIndex(g *cp.SecurityGroup) []byte {
	n := 16
	for _, s := range g.Sites {
		n += len(s) + 2
	}
	for _, r := range g.Rules {
		n += len(r.ID) + len(r.Direction) + len(r.Port) + len(r.Address) + 8
	}
	b := make([]byte, 0, n)
	str := func(s string) { b = binary.AppendUvarint(b, uint64(len(s))); b = append(b, s...) }
	b = binary.AppendUvarint(b, uint64(len(g.Sites)))
	for _, s := range g.Sites {
		str(s)
	}
	b = binary.AppendUvarint(b, uint64(len(g.Rules)))
	for _, r := range g.Rules {
		str(r.ID)
		str(r.Direction)
		b = binary.AppendUvarint(b, uint64(r.Protocol))
		str(r.Port)
		str(r.Address)
	}
	return b
}

var errBadIndex = errors.New("corrupt group index")

func decodeGroupIndex(b []byte) (sites []string, rules []cp.FilterRule, err error) {
	// One string holds every string of the index: one allocation, not
	// four per rule.
	all := string(b)
	num := func() uint64 {
		v, n := binary.Uvarint(b)
		if n <= 0 {
			err = errBadIndex
			return 0
		}
		b = b[n:]
		return v
	}
	str := func() string {
		l := num()
		if err != nil || l > uint64(len(b)) {
			err = errBadIndex
			return ""
		}
		off := len(all) - len(b)
		b = b[l:]
		return all[off : off+int(l)]
	}
	ns := num()
	if ns > uint64(len(b)) {
		return nil, nil, errBadIndex
	}
	sites = make([]string, 0, ns)
	for range ns {
		sites = append(sites, str())
	}
	nr := num()
	if nr > uint64(len(b)) {
		return nil, nil, errBadIndex
	}
	rules = make([]cp.FilterRule, 0, nr)
	for range nr {
		r := cp.FilterRule{ID: str(), Direction: str()}
		r.Protocol = int(num())
		r.Port, r.Address = str(), str()
		rules = append(rules, r)
	}
	return sites, rules, err
}

// setMembers moves a group or list (kind, id) from the sites remove to the
// sites add in the members index.
// Only the difference is written: a write that keeps most of a large
// resource's sites (one that leaves a decommissioned site) touches few
// keys.
func setMembers(ob *bolt.Bucket, kind, id string, remove, add []string) error {
	b := ob.Bucket(bucketMembers)
	adding := make(map[string]bool, len(add))
	for _, site := range add {
		adding[site] = true
	}
	kept := make(map[string]bool, len(remove))
	for _, site := range remove {
		if adding[site] {
			kept[site] = true
			continue
		}
		if err := b.Delete(key(site, kind, id)); err != nil {
			return err
		}
	}
	for _, site := range add {
		if kept[site] {
			continue
		}
		if err := b.Put(key(site, kind, id), nil); err != nil {
			return err
		}
	}
	return nil
}
