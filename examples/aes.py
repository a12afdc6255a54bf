# AES via OpenSSL's libcrypto through ctypes (the stdlib has no AES); EVP aes-256-ctr.
import ctypes, ctypes.util, os

_lib = ctypes.CDLL(ctypes.util.find_library("crypto") or "libcrypto.so.3")
_lib.EVP_CIPHER_CTX_new.restype = ctypes.c_void_p
_lib.EVP_aes_256_ctr.restype = ctypes.c_void_p
_lib.EVP_EncryptInit_ex.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p]
_lib.EVP_EncryptUpdate.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_int), ctypes.c_char_p, ctypes.c_int]
_lib.EVP_CIPHER_CTX_free.argtypes = [ctypes.c_void_p]

def _ctr(key, iv, data):
    ctx = _lib.EVP_CIPHER_CTX_new()
    _lib.EVP_EncryptInit_ex(ctx, _lib.EVP_aes_256_ctr(), None, key, iv)
    out = ctypes.create_string_buffer(len(data) + 16)
    n = ctypes.c_int(0)
    _lib.EVP_EncryptUpdate(ctx, out, ctypes.byref(n), data, len(data))
    _lib.EVP_CIPHER_CTX_free(ctx)
    return out.raw[: n.value]

def handler(event, context):
    key, iv = os.urandom(32), os.urandom(16)
    data = b"\x07" * event.get("bytes", 65536)
    enc = _ctr(key, iv, data)
    return {"ok": _ctr(key, iv, enc) == data, "bytes": len(enc)}
