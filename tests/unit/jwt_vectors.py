#!/usr/bin/python3
"""Test vectors for core/jwt, minted by an independent implementation.

Valid tokens come from PyJWT; the hostile ones are assembled by hand with
python3-cryptography.  Keys are generated afresh on every run and only their
public halves reach the output, so no private key is ever written anywhere.

Usage: /usr/bin/python3 jwt_vectors.py OUTPUT.json
(Debian's python3-jwt and python3-cryptography; a pyenv python lacks them.)
"""

import base64
import hashlib
import hmac
import json
import re
import sys

import jwt
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa, utils

# Must match JWT_MAX_TOKEN_LEN in core/jwt/jwt.c.
MAX_TOKEN_LEN = 16384
# The order of the P-256 group.
P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551

OK = "JWT_OK"
MALFORMED = "JWT_MALFORMED"
NO_KID = "JWT_NO_KID"
UNKNOWN_KID = "JWT_UNKNOWN_KID"
ALG_MISMATCH = "JWT_ALG_MISMATCH"
BAD_SIGNATURE = "JWT_BAD_SIGNATURE"

EC1_KID = "a1B2c3D4e5F6"
EC2_KID = "ec-second"
RSA_KID = "rsa-1"


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64u(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def compact_json(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode("utf-8")


def uint_bytes(value: int, length: int = 0) -> bytes:
    length = length or max(1, (value.bit_length() + 7) // 8)
    return value.to_bytes(length, "big")


# ---- keys ----

def ec_public_jwk(public_key, kid, **extra):
    numbers = public_key.public_numbers()
    size = (public_key.curve.key_size + 7) // 8
    crv = {256: "P-256", 384: "P-384"}[public_key.curve.key_size]
    jwk = {"kty": "EC", "crv": crv, "kid": kid,
           "x": b64u(uint_bytes(numbers.x, size)), "y": b64u(uint_bytes(numbers.y, size))}
    jwk.update(extra)
    return jwk


def rsa_public_jwk(public_key, kid, **extra):
    numbers = public_key.public_numbers()
    jwk = {"kty": "RSA", "kid": kid, "n": b64u(uint_bytes(numbers.n)), "e": b64u(uint_bytes(numbers.e))}
    jwk.update(extra)
    return jwk


def pem_of(public_key, fmt=serialization.PublicFormat.SubjectPublicKeyInfo) -> bytes:
    return public_key.public_bytes(serialization.Encoding.PEM, fmt)


ec1 = ec.generate_private_key(ec.SECP256R1())
ec2 = ec.generate_private_key(ec.SECP256R1())
rsa1 = rsa.generate_private_key(public_exponent=65537, key_size=2048)
attacker_ec = ec.generate_private_key(ec.SECP256R1())
attacker_rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)

# Keys that are valid in themselves but must not be usable, so tokens signed
# with them show they were skipped.
junk_p384 = ec.generate_private_key(ec.SECP384R1())
junk_enc = ec.generate_private_key(ec.SECP256R1())
junk_ec_rs256 = ec.generate_private_key(ec.SECP256R1())
junk_rsa_es256 = rsa.generate_private_key(public_exponent=65537, key_size=2048)
junk_rsa_ps256 = rsa.generate_private_key(public_exponent=65537, key_size=2048)
junk_rsa_1024 = rsa.generate_private_key(public_exponent=65537, key_size=1024)
dup_a = ec.generate_private_key(ec.SECP256R1())
dup_b = ec.generate_private_key(ec.SECP256R1())
junk_bad_use = ec.generate_private_key(ec.SECP256R1())

good_jwks = [
    ec_public_jwk(ec1.public_key(), EC1_KID, alg="ES256"),          # Stack's shape: no "use"
    ec_public_jwk(ec2.public_key(), EC2_KID),                        # no alg: ES256 from kty
    rsa_public_jwk(rsa1.public_key(), RSA_KID, alg="RS256", use="sig"),
]

off_curve = ec_public_jwk(ec1.public_key(), "junk-off-curve")
off_curve_y = int.from_bytes(unb64u(off_curve["y"]), "big")
off_curve["y"] = b64u(uint_bytes((off_curve_y + 1) % (2 ** 256), 32))

short_x = ec_public_jwk(ec2.public_key(), "junk-short-x")
short_x["x"] = b64u(unb64u(short_x["x"])[1:])

rsa_numbers = rsa1.public_key().public_numbers()


def without_kid(jwk):
    del jwk["kid"]
    return jwk


def rsa_with_exponent(kid, e):
    return {"kty": "RSA", "kid": kid, "n": b64u(uint_bytes(rsa_numbers.n)), "e": b64u(uint_bytes(e))}


junk_jwks = [
    ec_public_jwk(junk_p384.public_key(), "junk-p384"),                         # unknown crv
    ec_public_jwk(junk_enc.public_key(), "junk-enc", use="enc"),                # use is not sig
    ec_public_jwk(junk_bad_use.public_key(), "junk-use-array", use=["sig"]),    # use not a string
    ec_public_jwk(junk_ec_rs256.public_key(), "junk-ec-rs256", alg="RS256"),    # alg contradicts kty
    ec_public_jwk(ec2.public_key(), "junk-ec-alg-number", alg=256),             # alg not a string
    rsa_public_jwk(junk_rsa_es256.public_key(), "junk-rsa-es256", alg="ES256"), # alg contradicts kty
    rsa_public_jwk(junk_rsa_ps256.public_key(), "junk-rsa-ps256", alg="PS256"), # alg we do not do
    rsa_public_jwk(junk_rsa_1024.public_key(), "junk-rsa-1024"),               # modulus too small
    rsa_with_exponent("junk-rsa-e1", 1),
    rsa_with_exponent("junk-rsa-e-even", 65536),
    rsa_with_exponent("junk-rsa-e-huge", 2 ** 64 + 1),
    off_curve,                                                                  # not on P-256
    short_x,                                                                    # x is 31 bytes
    {"kty": "oct", "kid": "junk-oct", "k": b64u(b"a shared secret, never a JWKS key")},
    {"kty": "OKP", "crv": "Ed25519", "kid": "junk-okp",
     "x": b64u(ed25519.Ed25519PrivateKey.generate().public_key().public_bytes(
         serialization.Encoding.Raw, serialization.PublicFormat.Raw))},
    {"kty": "EC", "kid": "junk-no-crv", "x": good_jwks[0]["x"], "y": good_jwks[0]["y"]},
    {"kty": "RSA", "kid": "junk-rsa-no-n", "e": "AQAB"},
    {"kty": "EC", "crv": "P-256", "kid": "junk-padded-x",
     "x": good_jwks[0]["x"] + "=", "y": good_jwks[0]["y"]},
    {"crv": "P-256", "kid": "junk-no-kty", "x": good_jwks[0]["x"], "y": good_jwks[0]["y"]},
    without_kid(ec_public_jwk(ec2.public_key(), "")),                          # no kid
    ec_public_jwk(dup_a.public_key(), "dup"),                                   # kid twice: both out
    ec_public_jwk(dup_b.public_key(), "dup"),
    42,
    "not a key",
]

jwks_doc = {"keys": good_jwks[:1] + junk_jwks[:8] + good_jwks[1:2] + junk_jwks[8:] + good_jwks[2:]}
junk_only_doc = {"keys": junk_jwks}


# ---- token assembly ----

def es256_raw(private_key, data: bytes) -> bytes:
    r, s = utils.decode_dss_signature(private_key.sign(data, ec.ECDSA(hashes.SHA256())))
    return uint_bytes(r, 32) + uint_bytes(s, 32)


def rs256_raw(private_key, data: bytes, digest=hashes.SHA256(), pad=None) -> bytes:
    return private_key.sign(data, pad or padding.PKCS1v15(), digest)


def assemble(header, payload, signer=None, signature=None) -> str:
    """header/payload: dict (compact JSON) or bytes (used as is)."""
    h = b64u(header if isinstance(header, bytes) else compact_json(header))
    p = b64u(payload if isinstance(payload, bytes) else compact_json(payload))
    signing_input = (h + "." + p).encode("ascii")
    if signature is None:
        signature = signer(signing_input) if signer else b""
    return h + "." + p + "." + b64u(signature)


def parts_of(token):
    return token.split(".")


def sig_bytes(token):
    return unb64u(parts_of(token)[2])


def with_signature(token, signature: bytes) -> str:
    h, p, _ = parts_of(token)
    return h + "." + p + "." + b64u(signature)


def pyjwt_es256(claims, key, kid, **headers):
    return jwt.encode(claims, key, algorithm="ES256", headers={"kid": kid, **headers})


def pyjwt_rs256(claims, key, kid, **headers):
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid, **headers})


# Long expired on purpose: exp is the caller's policy, never checked here.
claims_basic = {"sub": "user-1234", "aud": "gtmd", "iss": "https://api.stack-auth.com/api/v1/projects/p",
                "iat": 1700000000, "exp": 1700003600, "role": "authenticated"}
claims_unicode = {"sub": "usr_ünï", "aud": ["gtmd", "другой"], "name": "Zoë Łukasiewicz 山田太郎 🐍",
                  "quote": "a \"quoted\" \\ back/slash\u2028", "nested": {"list": [1, 2.5, True, None]},
                  "exp": 4102444800}

es1_token = pyjwt_es256(claims_basic, ec1, EC1_KID)
es2_token = pyjwt_es256(claims_basic, ec2, EC2_KID)
rs_token = pyjwt_rs256(claims_basic, rsa1, RSA_KID)

# Self-check: the reference implementation accepts what it minted.
for tok, key in ((es1_token, ec1), (es2_token, ec2)):
    jwt.decode(tok, key.public_key(), algorithms=["ES256"], audience="gtmd", options={"verify_exp": False})
jwt.decode(rs_token, rsa1.public_key(), algorithms=["RS256"], audience="gtmd", options={"verify_exp": False})

vectors = []


def add(name, token, expect, claims=None):
    vector = {"name": name, "token": token, "expect": expect}
    if expect == OK:
        assert claims is not None, name
        vector["claims"] = claims
    vectors.append(vector)


# -- accepted --
add("es256 valid, first EC kid (PyJWT)", es1_token, OK, claims_basic)
add("es256 valid, second EC kid, key without alg (PyJWT)", es2_token, OK, claims_basic)
add("rs256 valid (PyJWT)", rs_token, OK, claims_basic)
add("es256 unicode claims (PyJWT)", pyjwt_es256(claims_unicode, ec1, EC1_KID), OK, claims_unicode)
add("rs256 unicode claims (PyJWT)", pyjwt_rs256(claims_unicode, rsa1, RSA_KID), OK, claims_unicode)
add("es256 raw UTF-8 in payload JSON",
    assemble({"alg": "ES256", "kid": EC1_KID}, json.dumps(claims_unicode, ensure_ascii=False).encode(),
             lambda m: es256_raw(ec1, m)), OK, claims_unicode)
add("es256 header without typ", assemble({"alg": "ES256", "kid": EC1_KID}, claims_basic,
                                         lambda m: es256_raw(ec1, m)), OK, claims_basic)
add("es256 empty claims object", pyjwt_es256({}, ec1, EC1_KID), OK, {})
add("jku/jwk/x5u headers are ignored when the real key signed",
    pyjwt_es256(claims_basic, ec1, EC1_KID, jku="https://evil.example/jwks.json",
                x5u="https://evil.example/cert.pem",
                jwk=ec_public_jwk(attacker_ec.public_key(), EC1_KID)), OK, claims_basic)
r, s = sig_bytes(es1_token)[:32], sig_bytes(es1_token)[32:]
high_s = uint_bytes(P256_N - int.from_bytes(s, "big"), 32)
add("es256 (r, n-s): ECDSA malleability, which JWS does not forbid", with_signature(es1_token, r + high_s),
    OK, claims_basic)


def token_of_length(length):
    """A valid ES256 token exactly `length` bytes long."""
    signature_chars = len(b64u(bytes(64)))
    for header_pad in range(4):
        header = {"alg": "ES256", "kid": EC1_KID, "pad": "x" * header_pad}
        payload_chars = length - len(b64u(compact_json(header))) - 2 - signature_chars
        if payload_chars % 4 == 1:
            continue  # no byte string encodes to that many characters
        guess = payload_chars * 3 // 4
        for filler in range(max(0, guess - 16), guess + 4):
            claims = {"f": "y" * filler}
            if len(b64u(compact_json(claims))) == payload_chars:
                token = assemble(header, claims, lambda m: es256_raw(ec1, m))
                assert len(token) == length
                return token, claims
    raise RuntimeError("no token of length %d" % length)


at_limit, at_limit_claims = token_of_length(MAX_TOKEN_LEN)
over_limit, _ = token_of_length(MAX_TOKEN_LEN + 1)
add("token of exactly the size limit", at_limit, OK, at_limit_claims)
add("token one byte over the size limit", over_limit, MALFORMED)

# -- kid --
add("unknown kid", pyjwt_es256(claims_basic, ec1, "no-such-kid"), UNKNOWN_KID)
add("missing kid", jwt.encode(claims_basic, ec1, algorithm="ES256"), NO_KID)
add("kid is a number", assemble({"alg": "ES256", "kid": 12345}, claims_basic, lambda m: es256_raw(ec1, m)),
    NO_KID)
add("kid is null", assemble({"alg": "ES256", "kid": None}, claims_basic, lambda m: es256_raw(ec1, m)), NO_KID)
add("kid is empty", assemble({"alg": "ES256", "kid": ""}, claims_basic, lambda m: es256_raw(ec1, m)), NO_KID)
add("kid differs only in case", pyjwt_es256(claims_basic, ec1, EC1_KID.lower()), UNKNOWN_KID)
add("kid of the other EC key, signed by the first",
    pyjwt_es256(claims_basic, ec1, EC2_KID), BAD_SIGNATURE)
add("kid of a P-384 key that was skipped",
    jwt.encode(claims_basic, junk_p384, algorithm="ES384", headers={"kid": "junk-p384"}), UNKNOWN_KID)
add("kid of a use=enc key that was skipped", pyjwt_es256(claims_basic, junk_enc, "junk-enc"), UNKNOWN_KID)
add("kid of an EC key whose alg said RS256",
    pyjwt_es256(claims_basic, junk_ec_rs256, "junk-ec-rs256"), UNKNOWN_KID)
add("kid of an RSA key whose alg said ES256",
    pyjwt_rs256(claims_basic, junk_rsa_es256, "junk-rsa-es256"), UNKNOWN_KID)
add("kid of an RSA-1024 key that was skipped",
    pyjwt_rs256(claims_basic, junk_rsa_1024, "junk-rsa-1024"), UNKNOWN_KID)
add("kid shared by two keys (both skipped), first", pyjwt_es256(claims_basic, dup_a, "dup"), UNKNOWN_KID)
add("kid shared by two keys (both skipped), second", pyjwt_es256(claims_basic, dup_b, "dup"), UNKNOWN_KID)

# -- algorithm pinned by the key --
none_header = {"alg": "none", "kid": EC1_KID, "typ": "JWT"}
add("alg none, empty signature", assemble(none_header, claims_basic), ALG_MISMATCH)
add("alg none, real ES256 signature attached",
    assemble(none_header, claims_basic, signature=sig_bytes(es1_token)), ALG_MISMATCH)
add("alg None (capitalised), empty signature", assemble({"alg": "None", "kid": EC1_KID}, claims_basic),
    ALG_MISMATCH)
add("alg none on the RSA kid", assemble({"alg": "none", "kid": RSA_KID}, claims_basic), ALG_MISMATCH)
add("alg none without kid", assemble({"alg": "none"}, claims_basic), NO_KID)


def hs256_with_secret(kid, secret: bytes):
    return assemble({"alg": "HS256", "kid": kid, "typ": "JWT"}, claims_basic,
                    lambda m: hmac.new(secret, m, hashlib.sha256).digest())


add("HS256 keyed with the EC public key PEM", hs256_with_secret(EC1_KID, pem_of(ec1.public_key())), ALG_MISMATCH)
add("HS256 keyed with the RSA public key PEM (SPKI)",
    hs256_with_secret(RSA_KID, pem_of(rsa1.public_key())), ALG_MISMATCH)
add("HS256 keyed with the RSA public key PEM (PKCS#1)",
    hs256_with_secret(RSA_KID, pem_of(rsa1.public_key(), serialization.PublicFormat.PKCS1)), ALG_MISMATCH)
add("HS256 keyed with the JWK JSON text", hs256_with_secret(EC1_KID, compact_json(good_jwks[0])), ALG_MISMATCH)
add("HS256 keyed with the raw EC point",
    hs256_with_secret(EC1_KID, ec1.public_key().public_bytes(serialization.Encoding.X962,
                                                             serialization.PublicFormat.UncompressedPoint)),
    ALG_MISMATCH)
add("RS256 header on an EC kid (signed by the RSA key)", pyjwt_rs256(claims_basic, rsa1, EC1_KID), ALG_MISMATCH)
add("RS256 header on an EC kid (ES256 signature)",
    assemble({"alg": "RS256", "kid": EC1_KID}, claims_basic, lambda m: es256_raw(ec1, m)), ALG_MISMATCH)
add("ES256 header on the RSA kid (signed by an EC key)", pyjwt_es256(claims_basic, ec1, RSA_KID), ALG_MISMATCH)
add("ES256 header on the RSA kid (RS256 signature)",
    assemble({"alg": "ES256", "kid": RSA_KID}, claims_basic, lambda m: rs256_raw(rsa1, m)), ALG_MISMATCH)
add("ES384 header on an EC kid",
    jwt.encode(claims_basic, junk_p384, algorithm="ES384", headers={"kid": EC1_KID}), ALG_MISMATCH)
add("RS512 header on the RSA kid",
    jwt.encode(claims_basic, rsa1, algorithm="RS512", headers={"kid": RSA_KID}), ALG_MISMATCH)
add("PS256 header on the RSA kid",
    jwt.encode(claims_basic, rsa1, algorithm="PS256", headers={"kid": RSA_KID}), ALG_MISMATCH)
add("alg es256 in lower case",
    assemble({"alg": "es256", "kid": EC1_KID}, claims_basic, lambda m: es256_raw(ec1, m)), ALG_MISMATCH)
add("alg missing", assemble({"kid": EC1_KID}, claims_basic, lambda m: es256_raw(ec1, m)), ALG_MISMATCH)
add("alg is an array", assemble({"alg": ["ES256"], "kid": EC1_KID}, claims_basic, lambda m: es256_raw(ec1, m)),
    ALG_MISMATCH)
add("alg is null", assemble({"alg": None, "kid": EC1_KID}, claims_basic, lambda m: es256_raw(ec1, m)),
    ALG_MISMATCH)

# -- signatures --
tampered_payload = b64u(compact_json(dict(claims_basic, sub="admin")))
h, p, sg = parts_of(es1_token)
add("es256 tampered payload", h + "." + tampered_payload + "." + sg, BAD_SIGNATURE)
h, p, sg = parts_of(rs_token)
add("rs256 tampered payload", h + "." + tampered_payload + "." + sg, BAD_SIGNATURE)
h, p, sg = parts_of(es1_token)
add("es256 header re-encoded (same JSON, other signing input)",
    b64u(json.dumps(json.loads(unb64u(h)), indent=1).encode()) + "." + p + "." + sg,
    BAD_SIGNATURE)


def flip_bit(data: bytes, index: int, bit: int = 0) -> bytes:
    out = bytearray(data)
    out[index] ^= 1 << bit
    return bytes(out)


add("es256 one bit flipped in S", with_signature(es1_token, flip_bit(sig_bytes(es1_token), 63)), BAD_SIGNATURE)
add("es256 one bit flipped in R", with_signature(es1_token, flip_bit(sig_bytes(es1_token), 5, 3)), BAD_SIGNATURE)
add("rs256 one bit flipped", with_signature(rs_token, flip_bit(sig_bytes(rs_token), 255)), BAD_SIGNATURE)
add("es256 signature truncated to 63 bytes", with_signature(es1_token, sig_bytes(es1_token)[:63]), MALFORMED)
add("es256 signature with a 65th byte", with_signature(es1_token, sig_bytes(es1_token) + b"\0"), MALFORMED)
add("es256 signature empty", with_signature(es1_token, b""), MALFORMED)
add("rs256 signature truncated to 255 bytes", with_signature(rs_token, sig_bytes(rs_token)[1:]), MALFORMED)
add("rs256 signature with a leading zero byte", with_signature(rs_token, b"\0" + sig_bytes(rs_token)), MALFORMED)
add("rs256 signature empty", with_signature(rs_token, b""), MALFORMED)
add("rs256 signature all zero", with_signature(rs_token, bytes(256)), BAD_SIGNATURE)
add("rs256 signature equal to the modulus", with_signature(rs_token, uint_bytes(rsa_numbers.n, 256)),
    BAD_SIGNATURE)
add("rs256 header, PKCS#1 v1.5 signature over SHA-512",
    assemble({"alg": "RS256", "kid": RSA_KID}, claims_basic, lambda m: rs256_raw(rsa1, m, hashes.SHA512())),
    BAD_SIGNATURE)
add("rs256 header, PSS signature",
    assemble({"alg": "RS256", "kid": RSA_KID}, claims_basic,
             lambda m: rs256_raw(rsa1, m, pad=padding.PSS(padding.MGF1(hashes.SHA256()), 32))), BAD_SIGNATURE)
add("rs256 signed by another RSA key", pyjwt_rs256(claims_basic, attacker_rsa, RSA_KID), BAD_SIGNATURE)

while True:
    der_token = assemble({"alg": "ES256", "kid": EC1_KID}, claims_basic,
                         lambda m: ec1.sign(m, ec.ECDSA(hashes.SHA256())))
    if len(sig_bytes(der_token)) != 64:
        break
add("es256 DER signature instead of raw R||S", der_token, MALFORMED)

add("es256 R = 0", with_signature(es1_token, bytes(32) + s), BAD_SIGNATURE)
add("es256 S = 0", with_signature(es1_token, r + bytes(32)), BAD_SIGNATURE)
add("es256 R = S = 0", with_signature(es1_token, bytes(64)), BAD_SIGNATURE)
add("es256 R = n", with_signature(es1_token, uint_bytes(P256_N, 32) + s), BAD_SIGNATURE)
add("es256 S = n", with_signature(es1_token, r + uint_bytes(P256_N, 32)), BAD_SIGNATURE)
add("es256 R = n + r (same residue)",
    with_signature(es1_token, uint_bytes((P256_N + int.from_bytes(r, "big")) % 2 ** 256, 32) + s),
    BAD_SIGNATURE)
add("es256 R = 2^256 - 1", with_signature(es1_token, b"\xff" * 32 + s), BAD_SIGNATURE)
add("es256 signed by an attacker key, attacker's jwk and jku in the header",
    pyjwt_es256(claims_basic, attacker_ec, EC1_KID, jku="https://evil.example/jwks.json",
                jwk=ec_public_jwk(attacker_ec.public_key(), EC1_KID)), BAD_SIGNATURE)

# -- base64url --
h, p, sg = parts_of(es1_token)
add("padded signature (==)", h + "." + p + "." + sg + "==", MALFORMED)


def padded(segment_bytes: bytes) -> str:
    return base64.urlsafe_b64encode(segment_bytes).decode()


header_for_padding = {"alg": "ES256", "kid": EC1_KID}
while len(compact_json(header_for_padding)) % 3 == 0:
    header_for_padding["x"] = header_for_padding.get("x", "") + "x"
hp = padded(compact_json(header_for_padding))
assert hp.endswith("=")
add("padded header, correctly signed over the padded text",
    hp + "." + p + "." + b64u(es256_raw(ec1, (hp + "." + p).encode())), MALFORMED)
payload_for_padding = dict(claims_basic)
while len(compact_json(payload_for_padding)) % 3 == 0:
    payload_for_padding["x"] = payload_for_padding.get("x", "") + "x"
pp = padded(compact_json(payload_for_padding))
hh = b64u(compact_json(header_for_padding))
add("padded payload, correctly signed over the padded text",
    hh + "." + pp + "." + b64u(es256_raw(ec1, (hh + "." + pp).encode())), MALFORMED)

while True:
    std_token = pyjwt_es256(claims_basic, ec1, EC1_KID)
    if re.search(r"[-_]", parts_of(std_token)[2]):
        break
h, p, sg = parts_of(std_token)
add("signature in the standard base64 alphabet (+ /)",
    h + "." + p + "." + sg.replace("-", "+").replace("_", "/"), MALFORMED)
add("illegal character * in the signature", h + "." + p + "." + sg[:10] + "*" + sg[11:], MALFORMED)
add("space inside the payload", h + "." + p[:7] + " " + p[8:] + "." + sg, MALFORMED)
add("trailing newline", std_token + "\n", MALFORMED)
add("leading space", " " + std_token, MALFORMED)
add("NUL byte inside the token (length counts past it)", std_token[:20] + "\0" + std_token[21:], MALFORMED)
add("NUL and garbage after a valid token", std_token + "\0junk", MALFORMED)
add("non-ASCII byte in the header", "\u00e9" + std_token[1:], MALFORMED)

SEXTETS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
h, p, sg = parts_of(es1_token)
assert len(sg) % 4 == 2  # 64 bytes: the last character carries 4 unused bits
loose_last = SEXTETS[SEXTETS.index(sg[-1]) | 1]
loose_sig = sg[:-1] + loose_last
assert unb64u(loose_sig) == sig_bytes(es1_token)
add("signature whose last character has unused bits set (same bytes to a lax decoder)",
    h + "." + p + "." + loose_sig, MALFORMED)
add("signature of 4k+1 characters", h + "." + p + "." + sg + "A", MALFORMED)

# -- shape --
add("four segments", es1_token + "." + b64u(b"{}"), MALFORMED)
add("trailing dot (empty fourth segment)", es1_token + ".", MALFORMED)
add("two segments", h + "." + p, MALFORMED)
add("one segment", h, MALFORMED)
add("empty token", "", MALFORMED)
add("only dots", "..", MALFORMED)
add("empty header segment", "." + p + "." + sg, MALFORMED)
add("empty payload segment, correctly signed",
    assemble({"alg": "ES256", "kid": EC1_KID}, b"", lambda m: es256_raw(ec1, m)), MALFORMED)

# -- JSON --
for label, header_bytes in (("an array", b'["ES256"]'), ("a string", b'"ES256"'), ("null", b"null"),
                            ("not JSON", b"{alg: ES256, kid: " + EC1_KID.encode() + b"}"),
                            ("JSON with trailing bytes", compact_json({"alg": "ES256", "kid": EC1_KID}) + b"x")):
    add("header is " + label, assemble(header_bytes, claims_basic, lambda m: es256_raw(ec1, m)), MALFORMED)
dup_header = b'{"alg":"ES256","kid":"' + EC1_KID.encode() + b'","alg":"none"}'
add("header with alg twice, correctly signed", assemble(dup_header, claims_basic, lambda m: es256_raw(ec1, m)),
    MALFORMED)
es_signer = lambda m: es256_raw(ec1, m)  # noqa: E731
es_header = {"alg": "ES256", "kid": EC1_KID}
add("payload not JSON, correctly signed",
    jwt.api_jws.encode(b"not json at all", ec1, algorithm="ES256", headers={"kid": EC1_KID}), MALFORMED)
add("payload is an array, correctly signed", assemble(es_header, b'["sub","admin"]', es_signer), MALFORMED)
add("payload is a string, correctly signed", assemble(es_header, b'"admin"', es_signer), MALFORMED)
add("payload with sub twice, correctly signed", assemble(es_header, b'{"sub":"user","sub":"admin"}', es_signer),
    MALFORMED)
add("payload JSON with trailing bytes, correctly signed",
    assemble(es_header, compact_json(claims_basic) + b" {}", es_signer), MALFORMED)
add("payload with \\u0000 in a string, correctly signed",
    assemble(es_header, b'{"sub":"user\\u0000admin"}', es_signer), MALFORMED)
add("payload not UTF-8, correctly signed", assemble(es_header, b'{"sub":"\xff"}', es_signer), MALFORMED)

# -- crit --
add("crit [\"exp\"], correctly signed",
    pyjwt_es256(claims_basic, ec1, EC1_KID, crit=["exp"], exp=1700000000), MALFORMED)
add("crit [\"b64\"] with b64 false, correctly signed",
    assemble({"alg": "ES256", "kid": EC1_KID, "b64": False, "crit": ["b64"]}, claims_basic, es_signer), MALFORMED)
add("crit empty array, correctly signed",
    assemble({"alg": "ES256", "kid": EC1_KID, "crit": []}, claims_basic, es_signer), MALFORMED)
add("crit on an RS256 token, correctly signed",
    pyjwt_rs256(claims_basic, rsa1, RSA_KID, crit=["exp"], exp=1), MALFORMED)


# ---- jwt_peek_kid expectations, from a separate strict model ----

def strict_b64u(segment: str):
    if not re.fullmatch(r"[A-Za-z0-9_-]*", segment) or len(segment) % 4 == 1:
        return None
    data = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    return data if b64u(data) == segment else None


def reject_duplicates(pairs):
    keys = [k for k, _ in pairs]
    if len(keys) != len(set(keys)):
        raise ValueError("duplicate member")
    return dict(pairs)


def peek_expectation(token: str):
    raw = token.encode("utf-8")
    if not raw or len(raw) > MAX_TOKEN_LEN or raw.count(b".") != 2:
        return {"result": MALFORMED}
    header = strict_b64u(token.split(".")[0])
    if header is None:
        return {"result": MALFORMED}
    try:
        obj = json.loads(header.decode("utf-8"), object_pairs_hook=reject_duplicates)
    except ValueError:
        return {"result": MALFORMED}
    if not isinstance(obj, dict):
        return {"result": MALFORMED}
    kid = obj.get("kid")
    if not isinstance(kid, str) or kid == "":
        return {"result": NO_KID}
    return {"result": OK, "kid": kid}


for vector in vectors:
    vector["peek"] = peek_expectation(vector["token"])

names = [v["name"] for v in vectors]
assert len(names) == len(set(names)), "vector names must be unique"

output = {
    "comment": "generated by tests/unit/jwt_vectors.py; keys are fresh per build",
    "max_token_len": MAX_TOKEN_LEN,
    "jwks": json.dumps(jwks_doc),
    "jwks_usable_kids": [k["kid"] for k in good_jwks],
    "jwks_absent_kids": sorted({k["kid"] for k in junk_jwks if isinstance(k, dict) and "kid" in k}),
    "junk_only_jwks": json.dumps(junk_only_doc),
    "vectors": vectors,
}
with open(sys.argv[1], "w", encoding="utf-8") as out:
    json.dump(output, out, indent=1, ensure_ascii=True)
    out.write("\n")
