/* SPDX-License-Identifier: MIT */
/*
 * PKCS#12 (PFX) files: building one from a key and chain for servers that
 * want a single password-protected file (modern AES/PBKDF2/SHA-256 by
 * default, 3DES/SHA-1 for old Java and Windows), and opening one a user
 * supplies. The bags are walked by hand rather than with PKCS12_parse,
 * which silently keeps the first of several keys. OpenSSL 3 moved RC2 to the
 * legacy provider; it is loaded only when a file actually needs it.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/pkcs12.h>
#include <openssl/provider.h>

#include "crypto/crypto_int.h"

#define P12_ITER 2048
/*
 * An empty password is public: iterations would only make each export
 * (about 6 ms at 2048, over half of reading every file of a domain once)
 * slower without keeping anything from anyone, so it gets one.
 */
#define P12_ITER_EMPTY 1

int crypto_p12_build(const struct crypto_key *key, const struct crypto_chain *chain,
		     const char *pass, enum crypto_p12_algo algo, struct util_buf *out)
{
	STACK_OF(X509) *cas = NULL;
	PKCS12 *p12 = NULL;
	unsigned char *der = NULL;
	int nid, iter, len = 0, rc = -ENOMEM;
	const EVP_MD *mac_md;
	X509 *leaf;
	size_t i;

	if (!key || !key->priv || !chain || chain->n == 0)
		return -EINVAL;
	leaf = chain->certs[0]->x509;
	if (!crypto_cert_matches_key(chain->certs[0], key))
		return -EINVAL;
	if (!pass)
		pass = "";
	iter = *pass ? P12_ITER : P12_ITER_EMPTY;
	if (algo == CRYPTO_P12_LEGACY) {
		nid = NID_pbe_WithSHA1And3_Key_TripleDES_CBC;
		mac_md = EVP_sha1();
	} else {
		/* PBES2: PBKDF2 with hmacWithSHA256 is OpenSSL 3's PBES2 default PRF. */
		nid = NID_aes_256_cbc;
		mac_md = EVP_sha256();
	}
	cas = sk_X509_new_null();
	if (!cas)
		goto out;
	for (i = 1; i < chain->n; i++)
		if (!sk_X509_push(cas, chain->certs[i]->x509))
			goto out;
	/* mac_iter -1: no MAC here, added below with the digest we choose. */
	p12 = PKCS12_create_ex((char *)pass, NULL, key->pkey, leaf, cas, nid, nid, iter, -1,
			       0, NULL, NULL);
	if (!p12) {
		rc = -EINVAL;
		goto out;
	}
	if (!PKCS12_set_mac(p12, pass, -1, NULL, 0, iter, mac_md))
		goto out;
	len = i2d_PKCS12(p12, &der);
	if (len <= 0)
		goto out;
	rc = util_buf_append(out, der, (size_t)len);
out:
	ERR_clear_error();
	OPENSSL_clear_free(der, len > 0 ? (size_t)len : 0);
	PKCS12_free(p12);
	/* The stack only borrows the chain's certificates. */
	sk_X509_free(cas);
	return rc;
}

static pthread_once_t legacy_once = PTHREAD_ONCE_INIT;
static OSSL_PROVIDER *prov_default, *prov_legacy;
static bool legacy_ok;

static void legacy_unload(void)
{
	OSSL_PROVIDER_unload(prov_legacy);
	OSSL_PROVIDER_unload(prov_default);
}

static void legacy_load(void)
{
	/*
	 * Loading any provider by hand stops OpenSSL from activating the
	 * default one implicitly, so it is loaded (kept) first. The handles
	 * stay until exit: other threads may be using the algorithms.
	 */
	prov_default = OSSL_PROVIDER_load(NULL, "default");
	prov_legacy = prov_default ? OSSL_PROVIDER_load(NULL, "legacy") : NULL;
	legacy_ok = prov_legacy != NULL;
	/* Runs before OpenSSL's own exit handler, registered earlier. */
	if (prov_default)
		atexit(legacy_unload);
	ERR_clear_error();
}

static bool alg_needs_legacy(const X509_ALGOR *alg)
{
	const ASN1_OBJECT *obj;
	int nid;

	if (!alg)
		return false;
	X509_ALGOR_get0(&obj, NULL, NULL, alg);
	nid = OBJ_obj2nid(obj);
	return nid == NID_pbe_WithSHA1And40BitRC2_CBC || nid == NID_pbe_WithSHA1And128BitRC2_CBC ||
	       nid == NID_pbe_WithSHA1And40BitRC4 || nid == NID_pbe_WithSHA1And128BitRC4;
}

struct p12_walk {
	const char *pass;
	int passlen;
	EVP_PKEY *key;
	int nkeys;
	STACK_OF(X509) *certs;
	bool legacy_missing;
	struct crypto_kdf_budget budget;
	struct crypto_err *err; /* set when the walk itself wrote the sentence */
	bool err_set;
};

static int walk_bags(struct p12_walk *w, const STACK_OF(PKCS12_SAFEBAG) *bags, int depth)
{
	const PKCS12_SAFEBAG *bag;
	const PKCS8_PRIV_KEY_INFO *p8c;
	PKCS8_PRIV_KEY_INFO *p8 = NULL;
	const X509_ALGOR *alg;
	const X509_SIG *sig;
	EVP_PKEY *pkey = NULL;
	X509 *x;
	int i, rc;

	/* Nested SafeContents are legal but never deep in real files. */
	if (depth > 3)
		return -EINVAL;
	/* A real file holds a key and a few certificates; more is only work. */
	if (sk_PKCS12_SAFEBAG_num(bags) > 4 * CRYPTO_CHAIN_MAX) {
		crypto_err_set(w->err, "PFX holds more than %d bags (the limit)",
			       4 * CRYPTO_CHAIN_MAX);
		w->err_set = true;
		return -EINVAL;
	}
	for (i = 0; i < sk_PKCS12_SAFEBAG_num(bags); i++) {
		bag = sk_PKCS12_SAFEBAG_value(bags, i);
		switch (PKCS12_SAFEBAG_get_nid(bag)) {
		case NID_keyBag:
			p8c = PKCS12_SAFEBAG_get0_p8inf(bag);
			pkey = p8c ? EVP_PKCS82PKEY(p8c) : NULL;
			if (!pkey)
				return -EINVAL;
			break;
		case NID_pkcs8ShroudedKeyBag:
			sig = PKCS12_SAFEBAG_get0_pkcs8(bag);
			alg = NULL;
			if (sig)
				X509_SIG_get0(sig, &alg, NULL);
			if (crypto_kdf_charge_pbe(&w->budget, "PFX private key", alg, w->err)) {
				w->err_set = true;
				return -EINVAL;
			}
			if (alg_needs_legacy(alg)) {
				pthread_once(&legacy_once, legacy_load);
				if (!legacy_ok) {
					w->legacy_missing = true;
					return -EINVAL;
				}
			}
			p8 = PKCS12_decrypt_skey(bag, w->pass, w->passlen);
			pkey = p8 ? EVP_PKCS82PKEY(p8) : NULL;
			PKCS8_PRIV_KEY_INFO_free(p8);
			p8 = NULL;
			if (!pkey)
				return -EINVAL;
			break;
		case NID_certBag:
			if (PKCS12_SAFEBAG_get_bag_nid(bag) != NID_x509Certificate)
				continue;
			x = PKCS12_SAFEBAG_get1_cert(bag);
			if (!x)
				return -EINVAL;
			if (sk_X509_num(w->certs) >= CRYPTO_CHAIN_MAX) {
				X509_free(x);
				crypto_err_set(w->err, "PFX holds more than %d certificates "
						       "(the limit)", CRYPTO_CHAIN_MAX);
				w->err_set = true;
				return -EINVAL;
			}
			if (!sk_X509_push(w->certs, x)) {
				X509_free(x);
				return -ENOMEM;
			}
			continue;
		case NID_safeContentsBag:
			rc = walk_bags(w, PKCS12_SAFEBAG_get0_safes(bag), depth + 1);
			if (rc)
				return rc;
			continue;
		default:
			continue;
		}
		w->nkeys++;
		if (!w->key)
			w->key = pkey;
		else
			EVP_PKEY_free(pkey);
		pkey = NULL;
		/* A second key is a refusal already: decrypt no more of them. */
		if (w->nkeys > 1) {
			crypto_err_set(w->err, "PFX holds more than one private key");
			w->err_set = true;
			return -EINVAL;
		}
	}
	return 0;
}

int crypto_p12_parse(const void *der, size_t len, const char *pass,
		     struct crypto_key **key, struct crypto_chain **chain,
		     struct crypto_err *err)
{
	struct p12_walk w = { .pass = pass ? pass : "", .err = err };
	const ASN1_INTEGER *mac_iter = NULL;
	uint64_t iter = 1;
	STACK_OF(PKCS12_SAFEBAG) *bags = NULL;
	STACK_OF(PKCS7) *safes = NULL;
	struct crypto_chain *ch = NULL;
	struct crypto_cert *c = NULL;
	const unsigned char *p = der;
	PKCS12 *p12 = NULL;
	PKCS7 *p7;
	X509 *x;
	int i, nid, rc;

	*key = NULL;
	*chain = NULL;
	crypto_secure_heap();
	crypto_kdf_budget_init(&w.budget);
	if (strlen(w.pass) > CRYPTO_PASS_MAX) {
		crypto_err_set(err, "passphrase is longer than %d bytes (the limit)", CRYPTO_PASS_MAX);
		return -EINVAL;
	}
	w.passlen = (int)strlen(w.pass);
	w.certs = sk_X509_new_null();
	ch = crypto_chain_new();
	if (!w.certs || !ch) {
		rc = -ENOMEM;
		goto out;
	}
	if (len == 0 || len > 64 * 1024 * 1024 || !(p12 = d2i_PKCS12(NULL, &p, (long)len)) ||
	    p != (const unsigned char *)der + len) {
		crypto_err_set(err, "PFX is not valid PKCS#12");
		rc = -EINVAL;
		goto out;
	}
	/*
	 * An empty password may have been encoded as no password at all
	 * (NULL) or as the empty BMPString; try both like `openssl pkcs12`.
	 */
	if (PKCS12_mac_present(p12)) {
		/* The MAC's iteration count is the file's to choose: judge it first. */
		PKCS12_get0_mac(NULL, NULL, NULL, &mac_iter, p12);
		if (mac_iter && (!ASN1_INTEGER_get_uint64(&iter, mac_iter) || iter == 0)) {
			crypto_err_set(err, "PFX is not valid PKCS#12");
			rc = -EINVAL;
			goto out;
		}
		rc = crypto_kdf_charge(&w.budget, "PFX MAC", iter, w.passlen ? 1 : 2, err);
		if (rc)
			goto out;
		if (PKCS12_verify_mac(p12, w.pass, w.passlen)) {
			/* as given */
		} else if (w.passlen == 0 && PKCS12_verify_mac(p12, NULL, 0)) {
			w.pass = NULL;
		} else {
			crypto_err_set(err, "PFX password is wrong");
			rc = -EINVAL;
			goto out;
		}
	}
	safes = PKCS12_unpack_authsafes(p12);
	if (!safes) {
		crypto_err_set(err, "PFX is not valid PKCS#12");
		rc = -EINVAL;
		goto out;
	}
	for (i = 0; i < sk_PKCS7_num(safes); i++) {
		p7 = sk_PKCS7_value(safes, i);
		nid = OBJ_obj2nid(p7->type);
		if (nid == NID_pkcs7_data) {
			bags = PKCS12_unpack_p7data(p7);
		} else if (nid == NID_pkcs7_encrypted) {
			if (!p7->d.encrypted || !p7->d.encrypted->enc_data) {
				rc = -EINVAL;
				goto bad;
			}
			rc = crypto_kdf_charge_pbe(&w.budget, "PFX certificates",
						   p7->d.encrypted->enc_data->algorithm, err);
			if (rc)
				goto out;
			if (alg_needs_legacy(p7->d.encrypted->enc_data->algorithm)) {
				pthread_once(&legacy_once, legacy_load);
				if (!legacy_ok) {
					w.legacy_missing = true;
					rc = -EINVAL;
					goto bad;
				}
			}
			bags = PKCS12_unpack_p7encdata(p7, w.pass, w.passlen);
		} else {
			continue;
		}
		if (!bags) {
			rc = -EINVAL;
			goto bad;
		}
		rc = walk_bags(&w, bags, 0);
		sk_PKCS12_SAFEBAG_pop_free(bags, PKCS12_SAFEBAG_free);
		bags = NULL;
		if (rc && w.err_set)
			goto out;
		if (rc)
			goto bad;
	}
	if (w.nkeys == 0) {
		crypto_err_set(err, "PFX holds no private key");
		rc = -EINVAL;
		goto out;
	}
	if (w.nkeys > 1) {
		crypto_err_set(err, "PFX holds more than one private key");
		rc = -EINVAL;
		goto out;
	}
	/* The key's own certificate first, the others in file order. */
	for (i = 0; i < sk_X509_num(w.certs); i++) {
		x = sk_X509_value(w.certs, i);
		if (EVP_PKEY_eq(X509_get0_pubkey(x), w.key) == 1) {
			sk_X509_delete(w.certs, i);
			sk_X509_unshift(w.certs, x);
			break;
		}
	}
	while (sk_X509_num(w.certs) > 0) {
		x = sk_X509_shift(w.certs);
		c = crypto_cert_wrap(x);
		if (!c) {
			X509_free(x);
			rc = -ENOMEM;
			goto out;
		}
		rc = crypto_chain_push(ch, c);
		crypto_cert_free(c);
		if (rc)
			goto out;
	}
	*key = crypto_key_wrap(w.key, true);
	if (!*key) {
		rc = -ENOMEM;
		goto out;
	}
	w.key = NULL;
	*chain = ch;
	ch = NULL;
	rc = 0;
	goto out;
bad:
	if (w.legacy_missing)
		crypto_err_set(err, "PFX uses RC2 encryption, which this system cannot read");
	else if (rc == -ENOMEM)
		ERR_clear_error();
	else
		crypto_err_set(err, "PFX is not valid PKCS#12");
out:
	ERR_clear_error();
	sk_PKCS12_SAFEBAG_pop_free(bags, PKCS12_SAFEBAG_free);
	sk_PKCS7_pop_free(safes, PKCS7_free);
	sk_X509_pop_free(w.certs, X509_free);
	EVP_PKEY_free(w.key);
	PKCS12_free(p12);
	crypto_chain_free(ch);
	return rc;
}
