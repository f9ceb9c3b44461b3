package backupfmt

import (
	"reflect"
	"testing"
)

// FuzzDecodeMBFile feeds arbitrary bytes to the decoder, which reads blobs out of Manifest.db
// files that came from a device. It must never panic, and whatever it accepts must survive an
// encode/decode round trip unchanged. MBFileSize, the verify's in-place reader, must never
// panic either, and must agree with the decoder whenever both answer.
func FuzzDecodeMBFile(f *testing.F) {
	for _, mb := range sampleFiles() {
		b, err := EncodeMBFile(mb)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		checkMBFileSize(t, b)
		got, err := DecodeMBFile(b)
		if err != nil {
			return
		}
		enc, err := EncodeMBFile(got)
		if err != nil {
			t.Fatalf("EncodeMBFile(decoded %+v): %v", got, err)
		}
		again, err := DecodeMBFile(enc)
		if err != nil {
			t.Fatalf("DecodeMBFile(re-encoded): %v", err)
		}
		if !reflect.DeepEqual(normalise(again), normalise(got)) {
			t.Fatalf("round trip changed the file:\n got %+v\nwant %+v", again, got)
		}
	})
}

// normalise maps empty byte slices to nil: a present-but-empty Digest and an absent one are
// the same thing to every reader.
func normalise(f MBFile) MBFile {
	for _, p := range []*[]byte{&f.Digest, &f.EncryptionKey, &f.ExtendedAttributes} {
		if len(*p) == 0 {
			*p = nil
		}
	}
	return f
}
