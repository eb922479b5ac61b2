/* SPDX-License-Identifier: MIT */
/*
 * Private and public keys: generation, PEM parsing (PKCS#8, encrypted
 * PKCS#8, PKCS#1/SEC1 with or without legacy Proc-Type encryption), PEM
 * output and the key strength policy. OpenSSL is always handed a password
 * callback, so it never falls back to prompting on /dev/tty; every buffer
 * that holds private key bytes is wiped before it is freed.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/decoder.h>
#include <openssl/err.h>
#include <openssl/pem.h>

#include "crypto/crypto_int.h"

static const char *const key_type_names[] = {
	[CRYPTO_KEY_EC256] = "ec256",     [CRYPTO_KEY_EC384] = "ec384",
	[CRYPTO_KEY_RSA2048] = "rsa2048", [CRYPTO_KEY_RSA3072] = "rsa3072",
	[CRYPTO_KEY_RSA4096] = "rsa4096", [CRYPTO_KEY_ED25519] = "ed25519",
	[CRYPTO_KEY_OTHER] = "other",
};

const char *crypto_key_type_name(enum crypto_key_type t)
{
	if ((unsigned)t > CRYPTO_KEY_OTHER)
		return "other";
	return key_type_names[t];
}

int crypto_key_type_parse(const char *name, enum crypto_key_type *out)
{
	int t;

	if (!name)
		return -EINVAL;
	for (t = 0; t < CRYPTO_KEY_OTHER; t++) {
		if (strcasecmp(name, key_type_names[t]) == 0) {
			*out = (enum crypto_key_type)t;
			return 0;
		}
	}
	return -EINVAL;
}

struct crypto_key *crypto_key_wrap(EVP_PKEY *pkey, bool priv)
{
	struct crypto_key *k = calloc(1, sizeof(*k));

	if (!k)
		return NULL;
	atomic_init(&k->refs, 1);
	k->priv = priv;
	k->pkey = pkey;
	return k;
}

struct crypto_key *crypto_key_up_ref(struct crypto_key *k)
{
	if (k)
		atomic_fetch_add(&k->refs, 1);
	return k;
}

void crypto_key_free(struct crypto_key *k)
{
	if (!k || atomic_fetch_sub(&k->refs, 1) != 1)
		return;
	EVP_PKEY_free(k->pkey);
	free(k);
}

int crypto_key_generate(enum crypto_key_type t, struct crypto_key **out)
{
	EVP_PKEY *pkey = NULL;

	*out = NULL;
	crypto_secure_heap();
	switch (t) {
	case CRYPTO_KEY_EC256:
		pkey = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
		break;
	case CRYPTO_KEY_EC384:
		pkey = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
		break;
	case CRYPTO_KEY_RSA2048:
		pkey = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
		break;
	case CRYPTO_KEY_RSA3072:
		pkey = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)3072);
		break;
	case CRYPTO_KEY_RSA4096:
		pkey = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)4096);
		break;
	case CRYPTO_KEY_ED25519:
		pkey = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
		break;
	default:
		return -EINVAL;
	}
	ERR_clear_error();
	if (!pkey)
		return -ENOMEM;
	*out = crypto_key_wrap(pkey, true);
	if (!*out) {
		EVP_PKEY_free(pkey);
		return -ENOMEM;
	}
	return 0;
}

static bool label_is_key(const struct crypto_pem_block *blk)
{
	static const char suffix[] = "PRIVATE KEY";
	size_t sl = sizeof(suffix) - 1;

	return blk->label_len >= sl &&
	       memcmp(blk->label + blk->label_len - sl, suffix, sl) == 0;
}

bool crypto_pem_has_key(const void *pem, size_t len)
{
	struct crypto_pem_block blk;
	size_t pos = 0;

	while (crypto_pem_next(pem, len, &pos, &blk))
		if (label_is_key(&blk))
			return true;
	return false;
}

bool crypto_pem_has_cert(const void *pem, size_t len)
{
	struct crypto_pem_block blk;
	size_t pos = 0;

	while (crypto_pem_next(pem, len, &pos, &blk))
		if (blk.complete && (crypto_pem_label_is(&blk, "CERTIFICATE") ||
				     crypto_pem_label_is(&blk, "X509 CERTIFICATE")))
			return true;
	return false;
}

struct pass_ctx {
	const char *pass;
};

/*
 * Always installed, so OpenSSL never reads the passphrase from the
 * terminal: with no passphrase the answer is "none" (-1).
 */
static int pass_cb(char *buf, int size, int rwflag, void *u)
{
	const struct pass_ctx *pc = u;
	size_t n;

	if (!pc || !pc->pass || size <= 0)
		return -1;
	n = strlen(pc->pass);
	if (n > (size_t)size)
		return -1;
	memcpy(buf, pc->pass, n);
	return (int)n;
}

static bool block_has(const struct crypto_pem_block *blk, const char *s)
{
	return memmem(blk->start, blk->len, s, strlen(s)) != NULL;
}

/* RFC 1421 encryption needs both headers; Proc-Type alone is a damaged block. */
static bool block_is_encrypted(const struct crypto_pem_block *blk)
{
	return crypto_pem_label_is(blk, "ENCRYPTED PRIVATE KEY") ||
	       (block_has(blk, "Proc-Type: 4,ENCRYPTED") && block_has(blk, "DEK-Info:"));
}

static int key_charge_pkcs8(const unsigned char *der, long derlen, struct crypto_err *err)
{
	struct crypto_kdf_budget budget;
	const unsigned char *p = der;
	const X509_ALGOR *alg = NULL;
	X509_SIG *sig;
	int rc;

	sig = d2i_X509_SIG(NULL, &p, derlen);
	if (!sig) {
		ERR_clear_error();
		crypto_err_set(err, "private key is not valid PEM");
		return -EINVAL;
	}
	X509_SIG_get0(sig, &alg, NULL);
	crypto_kdf_budget_init(&budget);
	rc = crypto_kdf_charge_pbe(&budget, "encrypted private key", alg, err);
	X509_SIG_free(sig);
	return rc;
}

/*
 * An unencrypted PKCS#8 key (what certfs itself stores) decoded with its
 * type named: OpenSSL 3.0's generic PEM reader tries every decoder of every
 * key type and costs several times more, which a daemon loading thousands
 * of stored generations pays on each. NULL when the key is of another type
 * or does not decode this way (the generic reader then judges it).
 */
static EVP_PKEY *key_from_pkcs8(const unsigned char *der, long derlen)
{
	static const struct {
		int nid;
		const char *type;
	} types[] = {
		{ NID_X9_62_id_ecPublicKey, "EC" },
		{ NID_rsaEncryption, "RSA" },
		{ NID_ED25519, "ED25519" },
	};
	const unsigned char *p = der;
	PKCS8_PRIV_KEY_INFO *p8;
	const ASN1_OBJECT *alg = NULL;
	OSSL_DECODER_CTX *dctx = NULL;
	const char *type = NULL;
	EVP_PKEY *pkey = NULL;
	size_t left;
	int nid;

	p8 = d2i_PKCS8_PRIV_KEY_INFO(NULL, &p, derlen);
	if (!p8 || p != der + derlen || !PKCS8_pkey_get0(&alg, NULL, NULL, NULL, p8))
		goto out;
	nid = OBJ_obj2nid(alg);
	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
		if (types[i].nid == nid)
			type = types[i].type;
	if (!type)
		goto out;
	dctx = OSSL_DECODER_CTX_new_for_pkey(&pkey, "DER", "PrivateKeyInfo", type,
					     EVP_PKEY_KEYPAIR, NULL, NULL);
	p = der;
	left = (size_t)derlen;
	if (!dctx || !OSSL_DECODER_from_data(dctx, &p, &left) || left != 0) {
		EVP_PKEY_free(pkey);
		pkey = NULL;
	}
out:
	OSSL_DECODER_CTX_free(dctx);
	PKCS8_PRIV_KEY_INFO_free(p8);
	ERR_clear_error();
	return pkey;
}

int crypto_key_parse_pem(const void *pem, size_t len, const char *pass,
			 struct crypto_key **out, struct crypto_err *err)
{
	struct crypto_pem_block blk, keyblk;
	struct pass_ctx pc = { .pass = pass };
	unsigned char *der = NULL;
	char *copy = NULL;
	size_t pos = 0, nkeys = 0, i, n = 0;
	EVP_PKEY *pkey = NULL;
	BIO *bio = NULL;
	long derlen = 0;
	bool enc;
	int rc;

	*out = NULL;
	crypto_secure_heap();
	memset(&keyblk, 0, sizeof(keyblk));
	while (crypto_pem_next(pem, len, &pos, &blk)) {
		if (!label_is_key(&blk))
			continue;
		if (nkeys++ == 0)
			keyblk = blk;
	}
	if (nkeys == 0) {
		crypto_err_set(err, "no private key found");
		rc = -EINVAL;
		goto out;
	}
	if (nkeys > 1) {
		crypto_err_set(err, "more than one private key found");
		rc = -EINVAL;
		goto out;
	}
	/* Base64 and framing first, so a damaged block is not blamed on the passphrase. */
	rc = crypto_pem_block_decode(&keyblk, &der, &derlen);
	if (rc == -EINVAL)
		crypto_err_set(err, "private key is not valid PEM");
	if (rc)
		goto out;
	enc = block_is_encrypted(&keyblk);
	if (enc && !pass) {
		crypto_err_set(err, "key is encrypted: write the passphrase to passphrase first");
		rc = -EINVAL;
		goto out;
	}
	if (enc && strlen(pass) > CRYPTO_PASS_MAX) {
		crypto_err_set(err, "passphrase is longer than %d bytes (the limit)", CRYPTO_PASS_MAX);
		rc = -EINVAL;
		goto out;
	}
	/* PKCS#8 names its own PBKDF2 cost: judge it before OpenSSL derives. */
	if (crypto_pem_label_is(&keyblk, "ENCRYPTED PRIVATE KEY")) {
		rc = key_charge_pkcs8(der, derlen, err);
		if (rc)
			goto out;
	}
	if (!enc && crypto_pem_label_is(&keyblk, "PRIVATE KEY"))
		pkey = key_from_pkcs8(der, derlen);
	if (!pkey) {
		copy = OPENSSL_malloc(keyblk.len + 2);
		if (!copy) {
			rc = -ENOMEM;
			goto out;
		}
		for (i = 0; i < keyblk.len; i++)
			if (keyblk.start[i] != '\r')
				copy[n++] = keyblk.start[i];
		copy[n++] = '\n';
		bio = BIO_new_mem_buf(copy, (int)n);
		if (!bio) {
			rc = -ENOMEM;
			goto out;
		}
		pkey = PEM_read_bio_PrivateKey_ex(bio, NULL, pass_cb, &pc, NULL, NULL);
	}
	if (!pkey) {
		if (enc)
			crypto_err_set(err, "passphrase does not decrypt the private key");
		else
			crypto_err_set(err, "private key is not valid PEM");
		rc = -EINVAL;
		goto out;
	}
	*out = crypto_key_wrap(pkey, true);
	if (!*out) {
		rc = -ENOMEM;
		goto out;
	}
	pkey = NULL;
	rc = 0;
out:
	ERR_clear_error();
	EVP_PKEY_free(pkey);
	BIO_free(bio);
	OPENSSL_clear_free(copy, keyblk.len + 2);
	OPENSSL_clear_free(der, derlen > 0 ? (size_t)derlen : 0);
	return rc;
}

int crypto_key_to_pem(const struct crypto_key *k, struct util_buf *out)
{
	BIO *bio = NULL;
	char *p;
	long n = 0;
	int rc;

	if (!k->priv)
		return -EINVAL;
	/* Secure-heap BIO: its buffer is cleared when freed. */
	bio = BIO_new(BIO_s_secmem());
	if (!bio)
		return -ENOMEM;
	if (!PEM_write_bio_PrivateKey(bio, k->pkey, NULL, NULL, 0, NULL, NULL)) {
		rc = -ENOMEM;
		goto out;
	}
	n = BIO_get_mem_data(bio, &p);
	rc = n > 0 ? util_buf_append(out, p, (size_t)n) : -EINVAL;
	if (n > 0)
		OPENSSL_cleanse(p, (size_t)n);
out:
	ERR_clear_error();
	BIO_free(bio);
	return rc;
}

int crypto_key_public_pem(const struct crypto_key *k, struct util_buf *out)
{
	BIO *bio = BIO_new(BIO_s_mem());
	int rc;

	if (!bio)
		return -ENOMEM;
	if (!PEM_write_bio_PUBKEY(bio, k->pkey)) {
		rc = -ENOMEM;
		goto out;
	}
	rc = crypto_bio_to_buf(bio, out);
out:
	ERR_clear_error();
	BIO_free(bio);
	return rc;
}

bool crypto_key_is_private(const struct crypto_key *k)
{
	return k && k->priv;
}

enum crypto_key_type crypto_key_type_of(const struct crypto_key *k)
{
	char group[64];

	switch (EVP_PKEY_get_base_id(k->pkey)) {
	case EVP_PKEY_RSA:
		switch (EVP_PKEY_get_bits(k->pkey)) {
		case 2048:
			return CRYPTO_KEY_RSA2048;
		case 3072:
			return CRYPTO_KEY_RSA3072;
		case 4096:
			return CRYPTO_KEY_RSA4096;
		default:
			return CRYPTO_KEY_OTHER;
		}
	case EVP_PKEY_EC:
		if (!EVP_PKEY_get_group_name(k->pkey, group, sizeof(group), NULL))
			return CRYPTO_KEY_OTHER;
		if (strcmp(group, "prime256v1") == 0)
			return CRYPTO_KEY_EC256;
		if (strcmp(group, "secp384r1") == 0)
			return CRYPTO_KEY_EC384;
		return CRYPTO_KEY_OTHER;
	case EVP_PKEY_ED25519:
		return CRYPTO_KEY_ED25519;
	default:
		return CRYPTO_KEY_OTHER;
	}
}

/*
 * e = 1 makes "encryption" the identity and an even e has no inverse;
 * `openssl rsa -check` calls both "bad e value". NIST SP 800-89 bounds e
 * below 2^256; clients past that are not worth finding out about.
 */
static int rsa_check_exponent(const EVP_PKEY *pkey, struct crypto_err *err)
{
	BIGNUM *e = NULL;
	char *dec = NULL;
	int rc = 0;

	if (!EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_RSA_E, &e)) {
		crypto_err_set(err, "RSA public exponent cannot be read");
		return -EINVAL;
	}
	if (BN_is_odd(e) && BN_num_bits(e) >= 2 && BN_num_bits(e) <= 256)
		goto out;
	dec = BN_num_bits(e) <= 64 ? BN_bn2dec(e) : NULL;
	crypto_err_set(err, "RSA public exponent %s is not allowed (an odd number from 3, "
			    "usually 65537)", dec ? dec : "of more than 64 bits");
	rc = -EINVAL;
out:
	OPENSSL_free(dec);
	BN_free(e);
	ERR_clear_error();
	return rc;
}

int crypto_key_check_policy(const struct crypto_key *k, struct crypto_err *err)
{
	char group[64];
	int id = EVP_PKEY_get_base_id(k->pkey), bits;
	const char *sn;

	switch (id) {
	case EVP_PKEY_RSA:
		bits = EVP_PKEY_get_bits(k->pkey);
		if (bits < 2048) {
			crypto_err_set(err, "RSA key of %d bits is too weak (at least 2048)", bits);
			return -EINVAL;
		}
		return rsa_check_exponent(k->pkey, err);
	case EVP_PKEY_EC:
		if (!EVP_PKEY_get_group_name(k->pkey, group, sizeof(group), NULL)) {
			crypto_err_set(err, "EC key with explicit curve parameters is not allowed "
					    "(P-256 or P-384)");
			return -EINVAL;
		}
		if (strcmp(group, "prime256v1") && strcmp(group, "secp384r1")) {
			crypto_err_set(err, "EC curve %s is not allowed (P-256 or P-384)", group);
			return -EINVAL;
		}
		return 0;
	case EVP_PKEY_ED25519:
		return 0;
	case EVP_PKEY_DSA:
		crypto_err_set(err, "DSA keys are not allowed");
		return -EINVAL;
	case EVP_PKEY_RSA_PSS:
		crypto_err_set(err, "RSA-PSS keys are not allowed (use plain RSA)");
		return -EINVAL;
	default:
		sn = OBJ_nid2sn(id);
		if (id == NID_undef || !sn)
			sn = EVP_PKEY_get0_type_name(k->pkey);
		crypto_err_set(err, "%s keys are not allowed", sn ? sn : "unknown");
		return -EINVAL;
	}
}

bool crypto_key_same_public(const struct crypto_key *a, const struct crypto_key *b)
{
	bool same;

	if (!a || !b)
		return false;
	same = EVP_PKEY_eq(a->pkey, b->pkey) == 1;
	ERR_clear_error();
	return same;
}
