/* SPDX-License-Identifier: MIT */
/*
 * The cost of password-based key derivation, judged before it runs. A
 * PKCS#12 file or an encrypted PKCS#8 key names its own iteration count, so
 * a 700-byte upload can ask for 2^31 rounds of PBKDF2 and hold a thread for
 * hours. Every derivation an upload announces (MAC key, bag keys, encrypted
 * safes) is read from its ASN.1 parameters with OpenSSL's own decoders and
 * charged against a per-derivation cap and a budget for the whole upload;
 * the first charge that does not fit refuses the upload with a sentence
 * naming the limit, before any derivation has been started.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "crypto/crypto_int.h"

void crypto_kdf_budget_init(struct crypto_kdf_budget *b)
{
	b->left = CRYPTO_KDF_BUDGET;
}

/* An ASN1_INTEGER as a positive count; absent means default_value. */
static bool asn1_count(const ASN1_INTEGER *ai, uint64_t default_value, uint64_t *out)
{
	uint64_t v;

	if (!ai) {
		*out = default_value;
		return true;
	}
	if (!ASN1_INTEGER_get_uint64(&v, ai) || v == 0) {
		ERR_clear_error();
		return false;
	}
	*out = v;
	return true;
}

int crypto_kdf_charge(struct crypto_kdf_budget *b, const char *what, uint64_t iter,
		      unsigned times, struct crypto_err *err)
{
	if (iter > CRYPTO_KDF_ITER_MAX) {
		crypto_err_set(err, "%s: iteration count %" PRIu64 " is over the limit of %u",
			       what, iter, CRYPTO_KDF_ITER_MAX);
		return -EINVAL;
	}
	/* iter <= 600000 and times is small: no overflow. */
	if (iter * times > b->left) {
		crypto_err_set(err, "%s: key derivations need more than %u iterations in all "
				    "(the limit for one upload)",
			       what, CRYPTO_KDF_BUDGET);
		return -EINVAL;
	}
	b->left -= iter * times;
	return 0;
}

/* PBES2 (RFC 8018 6.2): the key derivation function inside carries the cost. */
static int charge_pbes2(struct crypto_kdf_budget *b, const char *what, const ASN1_TYPE *param,
			struct crypto_err *err)
{
	PBE2PARAM *pbe2 = NULL;
	PBKDF2PARAM *kdf = NULL;
	SCRYPT_PARAMS *sp = NULL;
	const ASN1_OBJECT *obj;
	uint64_t iter, n, r, p;
	int rc;

	pbe2 = ASN1_TYPE_unpack_sequence(ASN1_ITEM_rptr(PBE2PARAM), param);
	if (!pbe2 || !pbe2->keyfunc) {
		crypto_err_set(err, "%s: encryption parameters are not valid", what);
		rc = -EINVAL;
		goto out;
	}
	X509_ALGOR_get0(&obj, NULL, NULL, pbe2->keyfunc);
	switch (OBJ_obj2nid(obj)) {
	case NID_id_pbkdf2:
		kdf = ASN1_TYPE_unpack_sequence(ASN1_ITEM_rptr(PBKDF2PARAM),
						pbe2->keyfunc->parameter);
		if (!kdf || !asn1_count(kdf->iter, 0, &iter)) {
			crypto_err_set(err, "%s: PBKDF2 parameters are not valid", what);
			rc = -EINVAL;
			goto out;
		}
		rc = crypto_kdf_charge(b, what, iter, 1, err);
		break;
	case NID_id_scrypt:
		sp = ASN1_TYPE_unpack_sequence(ASN1_ITEM_rptr(SCRYPT_PARAMS),
					       pbe2->keyfunc->parameter);
		if (!sp || !asn1_count(sp->costParameter, 0, &n) ||
		    !asn1_count(sp->blockSize, 0, &r) ||
		    !asn1_count(sp->parallelizationParameter, 0, &p)) {
			crypto_err_set(err, "%s: scrypt parameters are not valid", what);
			rc = -EINVAL;
			goto out;
		}
		/* scrypt's work grows with N*r*p; count it like iterations. */
		if (n > CRYPTO_KDF_ITER_MAX || r > CRYPTO_KDF_ITER_MAX || p > CRYPTO_KDF_ITER_MAX ||
		    n * r > CRYPTO_KDF_ITER_MAX || n * r * p > CRYPTO_KDF_ITER_MAX) {
			crypto_err_set(err, "%s: scrypt cost N*r*p is over the limit of %u", what,
				       CRYPTO_KDF_ITER_MAX);
			rc = -EINVAL;
			goto out;
		}
		rc = crypto_kdf_charge(b, what, n * r * p, 1, err);
		break;
	default:
		/* Nothing OpenSSL can derive with: it refuses without work. */
		rc = 0;
		break;
	}
out:
	ERR_clear_error();
	SCRYPT_PARAMS_free(sp);
	PBKDF2PARAM_free(kdf);
	PBE2PARAM_free(pbe2);
	return rc;
}

static bool pkcs12_pbe(int nid)
{
	switch (nid) {
	case NID_pbe_WithSHA1And128BitRC4:
	case NID_pbe_WithSHA1And40BitRC4:
	case NID_pbe_WithSHA1And3_Key_TripleDES_CBC:
	case NID_pbe_WithSHA1And2_Key_TripleDES_CBC:
	case NID_pbe_WithSHA1And128BitRC2_CBC:
	case NID_pbe_WithSHA1And40BitRC2_CBC:
		return true;
	default:
		return false;
	}
}

int crypto_kdf_charge_pbe(struct crypto_kdf_budget *b, const char *what, const X509_ALGOR *alg,
			  struct crypto_err *err)
{
	const ASN1_OBJECT *obj;
	PBEPARAM *pbe = NULL;
	uint64_t iter;
	int nid, rc;

	if (!alg)
		return 0;
	X509_ALGOR_get0(&obj, NULL, NULL, alg);
	nid = OBJ_obj2nid(obj);
	if (nid == NID_pbes2)
		return charge_pbes2(b, what, alg->parameter, err);
	/* Not a password-based scheme OpenSSL knows: it fails without deriving. */
	if (!EVP_PBE_find(EVP_PBE_TYPE_OUTER, nid, NULL, NULL, NULL)) {
		ERR_clear_error();
		return 0;
	}
	pbe = ASN1_TYPE_unpack_sequence(ASN1_ITEM_rptr(PBEPARAM), alg->parameter);
	if (!pbe || !asn1_count(pbe->iter, 1, &iter)) {
		crypto_err_set(err, "%s: encryption parameters are not valid", what);
		rc = -EINVAL;
		goto out;
	}
	/*
	 * The PKCS#12 schemes (RFC 7292 appendix C) run the KDF once for the
	 * key and once more for the IV; PKCS#5 v1.5 derives both at once.
	 */
	rc = crypto_kdf_charge(b, what, iter, pkcs12_pbe(nid) ? 2 : 1, err);
out:
	ERR_clear_error();
	PBEPARAM_free(pbe);
	return rc;
}
