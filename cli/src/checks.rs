//! How `linepool serve`'s refusals name what was wrong: a library error's
//! setting as its flag, and a flag that came from a variable as that
//! variable.

use linepool::Setting;

use super::settings::Given;

/// `message` with each flag that came from its variable named by the
/// variable instead (`--tls-cert` as `LINEPOOL_TLS_CERT`), as clap's own
/// refusals name it.
pub(super) fn name_variables(message: &str, given: &[Given]) -> String {
    let mut message = message.to_string();
    for setting in given {
        if let super::settings::Origin::Env(variable) = &setting.origin {
            let flag = format!("--{} ", setting.name.replace('_', "-"));
            message = message.replace(&flag, &format!("{variable} "));
        }
    }
    message
}

/// A library error in the command line's words: the setting it names, as
/// its flag. Certificate and protocol errors name their flags themselves.
pub(super) fn described(e: &linepool::Error) -> String {
    let linepool::Error::Setting { setting, reason } = e else {
        return e.to_string();
    };
    let flag = match setting {
        Setting::Host => "--host",
        Setting::Workers => "--workers",
        Setting::MaxConnections => "--max-connections",
        Setting::MaxLine => "--max-line",
        Setting::AdminCert => "--admin-cert",
        _ => return reason.clone(),
    };
    format!("{flag}: {reason}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_file_names_the_variable_it_came_from() {
        let given = [Given {
            name: "tls_key".to_string(),
            origin: super::super::settings::Origin::Env("LINEPOOL_TLS_KEY".to_string()),
        }];
        assert_eq!(
            name_variables("--tls-key k does not go with --tls-cert c: x", &given),
            "LINEPOOL_TLS_KEY k does not go with --tls-cert c: x"
        );
    }
}
