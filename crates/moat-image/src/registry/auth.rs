//! Registry credentials from `~/.docker/config.json` (or `$DOCKER_CONFIG/config.json`):
//! inline `auths` entries, `credHelpers` and `credsStore` helpers alike.

use docker_credential::{CredentialRetrievalError, DockerCredential};
use oci_client::secrets::RegistryAuth;

/// The keys Docker files credentials under for `registry`, most specific first.
fn config_keys(registry: &str) -> Vec<String> {
    if matches!(registry, "docker.io" | "index.docker.io" | "registry-1.docker.io") {
        return vec!["https://index.docker.io/v1/".into(), "index.docker.io".into(), "docker.io".into()];
    }
    vec![registry.to_owned(), format!("https://{registry}"), format!("http://{registry}")]
}

/// The credentials to present to `registry`; anonymous when none are configured.
pub fn credentials(registry: &str) -> Result<RegistryAuth, String> {
    for key in config_keys(registry) {
        match docker_credential::get_credential(&key) {
            Ok(DockerCredential::UsernamePassword(user, password)) => return Ok(RegistryAuth::Basic(user, password)),
            Ok(DockerCredential::IdentityToken(_)) => {
                tracing::warn!(registry, "identity tokens are not supported; going anonymously");
                return Ok(RegistryAuth::Anonymous);
            }
            Err(
                CredentialRetrievalError::NoCredentialConfigured
                | CredentialRetrievalError::ConfigNotFound
                | CredentialRetrievalError::ConfigReadError,
            ) => {}
            Err(CredentialRetrievalError::HelperFailure { helper, stdout, .. }) => {
                tracing::warn!(registry, helper, output = stdout.trim(), "credential helper found nothing; going anonymously");
                return Ok(RegistryAuth::Anonymous);
            }
            Err(other) => return Err(other.to_string()),
        }
    }
    Ok(RegistryAuth::Anonymous)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_hub_uses_the_legacy_key_first() {
        assert_eq!(config_keys("docker.io")[0], "https://index.docker.io/v1/");
        assert_eq!(config_keys("127.0.0.1:5000")[0], "127.0.0.1:5000");
    }
}
