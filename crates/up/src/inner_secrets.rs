//! The secrets that make each inner hop of a local chain accept only the hop in front of it:
//! the gateway's secret for MainService (`x-strata-gateway-secret`), and the credentials
//! MainService signs its Lambda calls with, which the Lambda service checks. Both are fresh
//! for every run, from the OS random source, and travel only in the environment of the two
//! hops that share each one (never in the run's configuration file or on a command line).

use crate::private;

/// The access key id MainService signs with; only its secret is secret.
pub const MAIN_SERVICE_ACCESS_KEY_ID: &str = "strata-main-service";

pub struct InnerSecrets {
    gateway: String,
    lambda: String,
}

impl InnerSecrets {
    pub fn generate() -> anyhow::Result<InnerSecrets> {
        Ok(InnerSecrets { gateway: private::secret()?, lambda: private::secret()? })
    }

    /// The gateway sends its secret with every integration request.
    pub fn gateway_env(&self) -> Vec<(String, String)> {
        vec![("STRATA_GATEWAY__INTEGRATION_SECRET".into(), self.gateway.clone())]
    }

    /// MainService expects the gateway's secret and signs its Lambda calls with its own
    /// credentials (the SDK's standard variables; they replace any local ones set before).
    pub fn main_service_env(&self) -> Vec<(String, String)> {
        vec![
            ("STRATA_MAIN_SERVICE__GATEWAY_SECRET".into(), self.gateway.clone()),
            ("AWS_ACCESS_KEY_ID".into(), MAIN_SERVICE_ACCESS_KEY_ID.into()),
            ("AWS_SECRET_ACCESS_KEY".into(), self.lambda.clone()),
        ]
    }

    /// The Lambda service accepts only requests signed with MainService's credentials.
    pub fn lambda_service_env(&self) -> Vec<(String, String)> {
        vec![
            (
                "STRATA_LAMBDA_SERVICE__CALLER_ACCESS_KEY_ID".into(),
                MAIN_SERVICE_ACCESS_KEY_ID.into(),
            ),
            ("STRATA_LAMBDA_SERVICE__CALLER_SECRET_ACCESS_KEY".into(), self.lambda.clone()),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value<'a>(env: &'a [(String, String)], name: &str) -> &'a str {
        env.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("no {name}"))
    }

    #[test]
    fn each_pair_of_hops_shares_its_own_fresh_secret() {
        let s = InnerSecrets::generate().unwrap();
        let (gw, ms, ls) = (s.gateway_env(), s.main_service_env(), s.lambda_service_env());
        assert_eq!(
            value(&gw, "STRATA_GATEWAY__INTEGRATION_SECRET"),
            value(&ms, "STRATA_MAIN_SERVICE__GATEWAY_SECRET")
        );
        assert_eq!(
            value(&ms, "AWS_SECRET_ACCESS_KEY"),
            value(&ls, "STRATA_LAMBDA_SERVICE__CALLER_SECRET_ACCESS_KEY")
        );
        assert_eq!(
            value(&ms, "AWS_ACCESS_KEY_ID"),
            value(&ls, "STRATA_LAMBDA_SERVICE__CALLER_ACCESS_KEY_ID")
        );
        assert_ne!(
            value(&gw, "STRATA_GATEWAY__INTEGRATION_SECRET"),
            value(&ms, "AWS_SECRET_ACCESS_KEY")
        );
        assert_eq!(value(&gw, "STRATA_GATEWAY__INTEGRATION_SECRET").len(), 32);
        let again = InnerSecrets::generate().unwrap();
        assert_ne!(
            value(&again.gateway_env(), "STRATA_GATEWAY__INTEGRATION_SECRET"),
            value(&gw, "STRATA_GATEWAY__INTEGRATION_SECRET")
        );
    }
}
