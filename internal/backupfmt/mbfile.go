package backupfmt

import (
	"errors"
	"fmt"

	"howett.net/plist"

	"snapback/internal/plistio"
)

// MBFile is the metadata of one Manifest.db row, stored in its file column as an
// NSKeyedArchiver archive. Times are Unix seconds (not Apple's 2001 epoch).
type MBFile struct {
	RelativePath       string
	LastModified       int64
	LastStatusChange   int64
	Birth              int64
	Size               int64
	Mode               int64 // full st_mode, e.g. 0o100644, 0o40755, 0o120755
	InodeNumber        uint64
	UserID             int64
	GroupID            int64
	Flags              int64 // MBFile's own flags, almost always 0; not the row flags
	ProtectionClass    int64
	Digest             []byte // SHA-1; system domains only
	EncryptionKey      []byte // encrypted backups only: LE u32 class + 40-byte wrapped key
	Target             string // symlink target
	ExtendedAttributes []byte // an embedded binary plist dict name → data
}

// ErrBadMBFile is wrapped by DecodeMBFile for blobs that are not an MBFile archive.
var ErrBadMBFile = errors.New("not an MBFile archive")

const (
	keyedArchiverVersion = 100000
	keyedArchiverName    = "NSKeyedArchiver"
)

// EncodeMBFile encodes f as a binary-plist NSKeyedArchiver archive with the object order real
// backups use: "$null", the MBFile dict, RelativePath, [Digest], [EncryptionKey NSMutableData
// dict, its class], [ExtendedAttributes], [Target], the MBFile class. All ten scalar fields
// are always written, for directories too, because some readers require every one of them.
func EncodeMBFile(f MBFile) ([]byte, error) {
	objects := make([]any, 2, 9)
	objects[0] = "$null"
	add := func(v any) plist.UID {
		objects = append(objects, v)
		return plist.UID(len(objects) - 1)
	}
	root := bpDict{
		{"LastModified", f.LastModified},
		{"LastStatusChange", f.LastStatusChange},
		{"Birth", f.Birth},
		{"Size", f.Size},
		{"Mode", f.Mode},
		{"InodeNumber", f.InodeNumber},
		{"UserID", f.UserID},
		{"GroupID", f.GroupID},
		{"Flags", f.Flags},
		{"ProtectionClass", f.ProtectionClass},
		{"RelativePath", add(f.RelativePath)},
	}
	if f.Digest != nil {
		root = append(root, bpKV{"Digest", add(f.Digest)})
	}
	if f.EncryptionKey != nil {
		data := bpDict{{"NS.data", f.EncryptionKey}}
		root = append(root, bpKV{"EncryptionKey", add(data)})
		// The data dict's class is the next object; fill in its UID after adding it.
		cls := add(bpDict{
			{"$classname", "NSMutableData"},
			{"$classes", []string{"NSMutableData", "NSData", "NSObject"}},
		})
		objects[len(objects)-2] = append(data, bpKV{"$class", cls})
	}
	if f.ExtendedAttributes != nil {
		root = append(root, bpKV{"ExtendedAttributes", add(f.ExtendedAttributes)})
	}
	if f.Target != "" {
		root = append(root, bpKV{"Target", add(f.Target)})
	}
	root = append(root, bpKV{"$class", add(bpDict{
		{"$classname", "MBFile"},
		{"$classes", []string{"MBFile", "NSObject"}},
	})})
	objects[1] = root
	return encodeBPlist(bpDict{
		{"$version", int64(keyedArchiverVersion)},
		{"$archiver", keyedArchiverName},
		{"$top", bpDict{{"root", plist.UID(1)}}},
		{"$objects", objects},
	}), nil
}

// DecodeMBFile decodes an MBFile archive (binary or XML plist). It follows one level of UIDs,
// which is all real archives use, and tolerates missing optional fields. Errors wrap
// ErrBadMBFile.
func DecodeMBFile(b []byte) (MBFile, error) {
	var a struct {
		Top     map[string]any `plist:"$top"`
		Objects []any          `plist:"$objects"`
	}
	if err := plistio.Unmarshal(b, &a); err != nil {
		return MBFile{}, fmt.Errorf("%w: %v", ErrBadMBFile, err)
	}
	resolve := func(v any) (any, error) {
		uid, ok := v.(plist.UID)
		if !ok {
			return v, nil
		}
		if uint64(uid) >= uint64(len(a.Objects)) {
			return nil, fmt.Errorf("%w: UID %d out of range (%d objects)", ErrBadMBFile, uid, len(a.Objects))
		}
		if uid == 0 {
			return nil, nil // "$null"
		}
		return a.Objects[uid], nil
	}
	rootRef, ok := a.Top["root"]
	if !ok {
		return MBFile{}, fmt.Errorf("%w: no $top.root", ErrBadMBFile)
	}
	if _, ok := rootRef.(plist.UID); !ok {
		return MBFile{}, fmt.Errorf("%w: $top.root is %T, want UID", ErrBadMBFile, rootRef)
	}
	rv, err := resolve(rootRef)
	if err != nil {
		return MBFile{}, err
	}
	root, ok := rv.(map[string]any)
	if !ok {
		return MBFile{}, fmt.Errorf("%w: root object is %T, want dict", ErrBadMBFile, rv)
	}
	if cv, err := resolve(root["$class"]); err != nil {
		return MBFile{}, err
	} else if cls, ok := cv.(map[string]any); ok {
		if name, _ := cls["$classname"].(string); name != "MBFile" {
			return MBFile{}, fmt.Errorf("%w: class %q", ErrBadMBFile, name)
		}
	}

	var f MBFile
	ints := []struct {
		key string
		dst *int64
	}{
		{"LastModified", &f.LastModified}, {"LastStatusChange", &f.LastStatusChange},
		{"Birth", &f.Birth}, {"Size", &f.Size}, {"Mode", &f.Mode}, {"UserID", &f.UserID},
		{"GroupID", &f.GroupID}, {"Flags", &f.Flags}, {"ProtectionClass", &f.ProtectionClass},
	}
	for _, it := range ints {
		v, ok := root[it.key]
		if !ok {
			continue
		}
		n, ok := plistio.Int(v)
		if !ok {
			return MBFile{}, fmt.Errorf("%w: %s is %T, want integer", ErrBadMBFile, it.key, v)
		}
		*it.dst = n
	}
	if v, ok := root["InodeNumber"]; ok {
		n, ok := plistio.Int(v)
		if !ok {
			return MBFile{}, fmt.Errorf("%w: InodeNumber is %T, want integer", ErrBadMBFile, v)
		}
		f.InodeNumber = uint64(n)
	}

	str := func(key string) (string, error) {
		v, err := resolve(root[key])
		if err != nil || v == nil {
			return "", err
		}
		s, ok := v.(string)
		if !ok {
			return "", fmt.Errorf("%w: %s is %T, want string", ErrBadMBFile, key, v)
		}
		return s, nil
	}
	data := func(key string) ([]byte, error) {
		v, err := resolve(root[key])
		if err != nil || v == nil {
			return nil, err
		}
		switch d := v.(type) {
		case []byte:
			return d, nil
		case map[string]any: // NSData / NSMutableData wrapper
			if b, ok := d["NS.data"].([]byte); ok {
				return b, nil
			}
		}
		return nil, fmt.Errorf("%w: %s is %T, want data", ErrBadMBFile, key, v)
	}
	if f.RelativePath, err = str("RelativePath"); err != nil {
		return MBFile{}, err
	}
	if f.Target, err = str("Target"); err != nil {
		return MBFile{}, err
	}
	if f.Digest, err = data("Digest"); err != nil {
		return MBFile{}, err
	}
	if f.EncryptionKey, err = data("EncryptionKey"); err != nil {
		return MBFile{}, err
	}
	if f.ExtendedAttributes, err = data("ExtendedAttributes"); err != nil {
		return MBFile{}, err
	}
	return f, nil
}
