//! What can go wrong when a server is set up, and with which setting: the
//! library's one error type. Settings are named as [`Config`](crate::Config)
//! names them; the `linepool` binary says which flag that is.

use std::fmt;
use std::io;

/// Why a server could not be set up or started.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// A setting cannot be used as given.
    Setting {
        /// Which.
        setting: Setting,
        /// Why, in words that do not repeat the setting's name.
        reason: String,
    },
    /// A Unix socket path that a running server holds, or a file there
    /// that is not a socket: left alone.
    InUse(String),
    /// The system refused what the server needs: an address to listen on,
    /// a thread, a poller. The error says what was being done.
    Io(io::Error),
}

/// The settings an [`Error`] can name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Setting {
    /// [`Config::host`](crate::Config::host).
    Host,
    /// The listeners given to [`Server::from_listeners`](crate::Server::from_listeners).
    Listeners,
    /// [`Config::workers`](crate::Config::workers).
    Workers,
    /// [`Config::max_connections`](crate::Config::max_connections).
    MaxConnections,
    /// [`Config::max_line`](crate::Config::max_line).
    MaxLine,
    /// [`Config::admin_cert`](crate::Config::admin_cert).
    AdminCert,
    /// [`Config::tls`](crate::Config::tls): its certificate, key or client CA.
    Tls,
    /// The protocol's own settings (a chat room's bus).
    Protocol,
}

impl Setting {
    /// The setting's name, as [`Config`](crate::Config) has it.
    pub fn name(self) -> &'static str {
        match self {
            Setting::Host => "host",
            Setting::Listeners => "listeners",
            Setting::Workers => "workers",
            Setting::MaxConnections => "max_connections",
            Setting::MaxLine => "max_line",
            Setting::AdminCert => "admin_cert",
            Setting::Tls => "tls",
            Setting::Protocol => "protocol",
        }
    }
}

impl Error {
    /// `setting` cannot be used, for `reason`.
    pub(crate) fn setting(setting: Setting, reason: impl Into<String>) -> Error {
        Error::Setting {
            setting,
            reason: reason.into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Setting { setting, reason } => write!(f, "{}: {reason}", setting.name()),
            Error::InUse(why) => f.write_str(why),
            Error::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Error {
        Error::Io(e)
    }
}
