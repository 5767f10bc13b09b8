//! TLS for the key fetch: rustls with the `ring` provider, installed as the process default when
//! none is (the same choice as the GCS and Pub/Sub adapters: no aws-lc-sys, no OpenSSL).

/// Installs rustls' `ring` provider as the process default unless one is installed.
pub(crate) fn install_default_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}
