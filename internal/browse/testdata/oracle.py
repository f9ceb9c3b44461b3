#!/usr/bin/env python3
"""Independent reader of encrypted iOS backups (backup-format.md §3), for differential tests.

Python stdlib + python3-cryptography only; shares no code with the Go implementation.
Usage: oracle.py BACKUP_DIR WANT_DIR SCRATCH_DIR  (password on stdin)
Decrypts every regular file and compares it with WANT_DIR/<fileID>; prints "ok N" on success.
"""
import hashlib, os, plistlib, sqlite3, struct, sys
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.keywrap import aes_key_unwrap

backup, want_dir, scratch = sys.argv[1:4]
password = sys.stdin.buffer.read()
manifest = plistlib.load(open(os.path.join(backup, "Manifest.plist"), "rb"))

bag, off, header, classes, cur = manifest["BackupKeyBag"], 0, {}, [], None
while off < len(bag):
    tag = bag[off:off + 4].decode()
    n = struct.unpack(">I", bag[off + 4:off + 8])[0]
    v = bag[off + 8:off + 8 + n]
    off += 8 + n
    if tag == "UUID" and "UUID" in header:
        cur = {}
        classes.append(cur)
    (header if cur is None else cur)[tag] = struct.unpack(">I", v)[0] if n == 4 else v

k1 = hashlib.pbkdf2_hmac("sha256", password, header["DPSL"], header["DPIC"], 32)
kek = hashlib.pbkdf2_hmac("sha1", k1, header["SALT"], header["ITER"], 32)
class_keys = {c["CLAS"]: aes_key_unwrap(kek, c["WPKY"]) for c in classes if c["WRAP"] & 2}


def unwrap(blob44):
    return aes_key_unwrap(class_keys[struct.unpack("<I", blob44[:4])[0]], blob44[4:])


def decrypt(key, data):
    if not data:
        return b""
    d = Cipher(algorithms.AES(key), modes.CBC(b"\0" * 16)).decryptor()
    out = d.update(data) + d.finalize()
    pad = out[-1]
    assert 1 <= pad <= 16 and out[-pad:] == bytes([pad]) * pad, "bad PKCS#7 padding"
    return out[:-pad]


db_path = os.path.join(scratch, "Manifest.db")
with open(db_path, "wb") as f:
    f.write(decrypt(unwrap(manifest["ManifestKey"]), open(os.path.join(backup, "Manifest.db"), "rb").read()))
count = 0
con = sqlite3.connect(db_path)
for file_id, domain, rel, flags, blob in con.execute("SELECT fileID, domain, relativePath, flags, file FROM Files"):
    if flags != 1:
        continue
    archive = plistlib.loads(blob)
    objects = archive["$objects"]
    mbfile = objects[archive["$top"]["root"].data]
    key = unwrap(objects[mbfile["EncryptionKey"].data]["NS.data"])
    plain = decrypt(key, open(os.path.join(backup, file_id[:2], file_id), "rb").read())
    want = open(os.path.join(want_dir, file_id), "rb").read()
    assert plain == want, f"{domain} {rel}: content differs"
    assert mbfile["Size"] == len(plain), f"{domain} {rel}: Size {mbfile['Size']} != {len(plain)}"
    count += 1
print("ok", count)
