# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_linepool_global_optspecs
    string join \n h/help V/version
end

function __fish_linepool_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_linepool_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_linepool_using_subcommand
    set -l cmd (__fish_linepool_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c linepool -n "__fish_linepool_needs_command" -s h -l help -d 'Print help'
complete -c linepool -n "__fish_linepool_needs_command" -s V -l version -d 'Print version'
complete -c linepool -n "__fish_linepool_needs_command" -f -a "serve" -d 'Serve the line protocol: every line gets `ACK: <line>` back'
complete -c linepool -n "__fish_linepool_needs_command" -f -a "load" -d 'Drive load against a running server, checking every reply'
complete -c linepool -n "__fish_linepool_needs_command" -f -a "client" -d 'Talk to a server: input lines go out, what it sends is printed'
complete -c linepool -n "__fish_linepool_needs_command" -f -a "admin" -d 'Send one command to a running server\'s admin console (`serve --admin-socket`): `show info|conns|config`, `set SETTING VALUE`, `kill ID`, `pause`, `resume`, `drain`, `reload`, `stop`'
complete -c linepool -n "__fish_linepool_needs_command" -f -a "completions" -d 'Print a shell\'s completion script (`linepool completions bash`)'
complete -c linepool -n "__fish_linepool_needs_command" -f -a "generate-dist" -d 'Write the man pages and completions into a folder (for packaging)'
complete -c linepool -n "__fish_linepool_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c linepool -n "__fish_linepool_using_subcommand serve" -l host -d 'Host name or address to listen on' -r
complete -c linepool -n "__fish_linepool_using_subcommand serve" -l port -d 'Port to listen on; 0 takes any free port' -r
complete -c linepool -n "__fish_linepool_using_subcommand serve" -l workers -d 'Threads that run protocol code [default: the number of CPUs]' -r
complete -c linepool -n "__fish_linepool_using_subcommand serve" -l max-connections -d 'Connections open at once, served or idle' -r
complete -c linepool -n "__fish_linepool_using_subcommand serve" -l overload -d 'What happens at --max-connections' -r -f -a "block\t'Stop accepting: new clients wait in the kernel backlog'
reject\t'Accept, answer `ERR server busy`, close'"
complete -c linepool -n "__fish_linepool_using_subcommand serve" -l idle-timeout -d 'Close a client that sends no complete line, or reads no reply, for this long (`300`, `5m`, `500ms`); 0 never does' -r
complete -c linepool -n "__fish_linepool_using_subcommand serve" -l max-line -d 'Longest accepted line in bytes, not counting the line ending (at least 11, the length of `quit_server`)' -r
complete -c linepool -n "__fish_linepool_using_subcommand serve" -l backlog -d 'Listen backlog (the kernel caps it at net.core.somaxconn)' -r
complete -c linepool -n "__fish_linepool_using_subcommand serve" -l stats-interval -d 'Log a stats line this often (`10s`, `0.5`): lines answered, service time, open and ready connections, rejected and total connections; 0 never does' -r
complete -c linepool -n "__fish_linepool_using_subcommand serve" -l protocol -d 'The protocol spoken' -r -f -a "ack\t'Every line gets `ACK: <line>` back'
chat\t'A chat room'
framed\t'Length-prefixed echo'
sum\t'The number exchange'"
complete -c linepool -n "__fish_linepool_using_subcommand serve" -l server-name -d '`sum`: the server name given in replies' -r
complete -c linepool -n "__fish_linepool_using_subcommand serve" -l server-number -d '`sum`: the number the server answers with' -r
complete -c linepool -n "__fish_linepool_using_subcommand serve" -l admin-from -d 'Client addresses that may stop the server with `quit_server` (and `sum`\'s out-of-range rule): comma-separated networks, `any` or `none`' -r
complete -c linepool -n "__fish_linepool_using_subcommand serve" -l max-per-ip -d 'Connections open at once from one client address; 0: no limit' -r
complete -c linepool -n "__fish_linepool_using_subcommand serve" -l stop-grace -d 'How long a stop waits for clients that do not read their last replies before cutting them off (`1`, `500ms`)' -r
complete -c linepool -n "__fish_linepool_using_subcommand serve" -l drain -d 'On SIGTERM, first drain for this long (`30s`): keep serving and accepting while the agent says `drain`, then stop. SIGINT, a second signal and `quit_server` stop at once; 0 stops at once on SIGTERM too' -r
complete -c linepool -n "__fish_linepool_using_subcommand serve" -l agent -d 'Answer HAProxy agent checks here (`127.0.0.1:9001`): `ready`, or `drain` while draining or stopping' -r
complete -c linepool -n "__fish_linepool_using_subcommand serve" -l metrics -d 'Serve Prometheus metrics at http://ADDR:PORT/metrics and health at /healthz (`127.0.0.1:9100`; keep it off the public network)' -r
complete -c linepool -n "__fish_linepool_using_subcommand serve" -l tls-cert -d 'Speak TLS on every TCP connection with this certificate chain (PEM, the server\'s certificate first); needs --tls-key. SIGHUP re-reads it' -r -F
complete -c linepool -n "__fish_linepool_using_subcommand serve" -l tls-key -d 'The private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1)' -r -F
complete -c linepool -n "__fish_linepool_using_subcommand serve" -l tls-client-ca -d 'Verify client certificates against these CA certificates (PEM)' -r -F
complete -c linepool -n "__fish_linepool_using_subcommand serve" -l tls-client-auth -d 'Whether a client must present a certificate [default: required with --tls-client-ca]' -r -f -a "required\t'A client without a certificate the CA signed fails its handshake'
optional\t'A client may present none; one it presents must verify'"
complete -c linepool -n "__fish_linepool_using_subcommand serve" -l tls-min-version -d 'The lowest TLS version accepted: 1.2 or 1.3' -r
complete -c linepool -n "__fish_linepool_using_subcommand serve" -l tls-handshake-timeout -d 'How long a client has to finish its TLS handshake (`10s`)' -r
complete -c linepool -n "__fish_linepool_using_subcommand serve" -l admin-cert -d 'Certificate names that may stop the server (`quit_server`, `sum`\'s out-of-range rule), comma-separated: a verified client certificate\'s DNS or URI subject alternative name, or lacking those its common name. --admin-from must allow too' -r
complete -c linepool -n "__fish_linepool_using_subcommand serve" -l log-level -d 'How much to log' -r -f -a "off\t''
error\t''
warn\t''
info\t''
debug\t''
trace\t''"
complete -c linepool -n "__fish_linepool_using_subcommand serve" -l listen -d 'Listen on ADDR:PORT, IPv4 or IPv6 (`0.0.0.0:8000`, `[::]:8000`); may be given several times, or as a comma-separated list. Instead of --host and --port' -r
complete -c linepool -n "__fish_linepool_using_subcommand serve" -l unix -d 'Also listen on a Unix domain socket at PATH (a stale socket file is replaced; one a running server holds is refused). Its clients may stop the server by user id (--admin-uid). Plaintext only: refused with --tls-cert' -r -F
complete -c linepool -n "__fish_linepool_using_subcommand serve" -l unix-mode -d 'The file mode of the --unix socket, in octal' -r
complete -c linepool -n "__fish_linepool_using_subcommand serve" -l admin-uid -d 'User ids that may stop the server from the --unix socket, and use the --admin-socket console (comma-separated) [default: the server\'s own and root]' -r
complete -c linepool -n "__fish_linepool_using_subcommand serve" -l admin-read-uid -d 'User ids (comma-separated) that may only look at the --admin-socket console: `show …` and `help`. One in --admin-uid too may do all' -r
complete -c linepool -n "__fish_linepool_using_subcommand serve" -l admin-socket -d 'Serve the admin console on a Unix socket at PATH (a stale socket file is replaced; one a running server holds is refused): `show info|conns|config`, `set SETTING VALUE`, `kill ID`, `pause`, `resume`, `drain`, `reload`, `stop`, one line a command (`linepool admin`). --admin-uid may use it, --admin-read-uid only look' -r -F
complete -c linepool -n "__fish_linepool_using_subcommand serve" -l admin-socket-mode -d 'The file mode of the --admin-socket, in octal' -r
complete -c linepool -n "__fish_linepool_using_subcommand serve" -l chat-bus -d '`chat`: share the room with every instance on this Redis (`redis://HOST:PORT[/DB]`, a password as `redis://:PASS@HOST:PORT`). Redis away costs only the wider room: the local one goes on' -r
complete -c linepool -n "__fish_linepool_using_subcommand serve" -l chat-room -d '`chat` with --chat-bus: the room\'s name; instances share a room only if they give the same name' -r
complete -c linepool -n "__fish_linepool_using_subcommand serve" -l chat-heartbeat -d 'Time between two heartbeats on the chat bus (tests shorten it)' -r
complete -c linepool -n "__fish_linepool_using_subcommand serve" -l chat-backoff-max -d 'Longest wait between two attempts to reach the chat bus' -r
complete -c linepool -n "__fish_linepool_using_subcommand serve" -l proxy-protocol -d 'Expect a PROXY protocol header (v1 or v2, as HAProxy\'s send-proxy sends) first on every connection, within 5 s: the client address it names is the one logs, --admin-from and --max-per-ip see'
complete -c linepool -n "__fish_linepool_using_subcommand serve" -l check -d 'Check the flags and the certificate files, then exit: 0 if good, 2 if not (for ExecStartPre=). No variable: set in an environment file it would keep the server from ever starting'
complete -c linepool -n "__fish_linepool_using_subcommand serve" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c linepool -n "__fish_linepool_using_subcommand load; and not __fish_seen_subcommand_from compare help" -l host -d 'Server host name or address' -r
complete -c linepool -n "__fish_linepool_using_subcommand load; and not __fish_seen_subcommand_from compare help" -l port -d 'Server port' -r
complete -c linepool -n "__fish_linepool_using_subcommand load; and not __fish_seen_subcommand_from compare help" -s c -l connections -d 'Connections sending requests at once' -r
complete -c linepool -n "__fish_linepool_using_subcommand load; and not __fish_seen_subcommand_from compare help" -s n -l requests -d 'Requests in all, split evenly over the connections [default: 1000 per connection unless --duration is given]' -r
complete -c linepool -n "__fish_linepool_using_subcommand load; and not __fish_seen_subcommand_from compare help" -s d -l duration -d 'Run for this long instead (`10`, `10s`, `2m`)' -r
complete -c linepool -n "__fish_linepool_using_subcommand load; and not __fish_seen_subcommand_from compare help" -s R -l rate -d 'Open loop: send this many requests per second in all, spread over the connections, whatever the server does; latency counts from when each request was due. Without it, each connection waits for its replies. With --connect-per-request: this many new connections per second (arrivals), each with one request' -r
complete -c linepool -n "__fish_linepool_using_subcommand load; and not __fish_seen_subcommand_from compare help" -l pipeline -d 'Requests in flight on each connection (closed loop)' -r
complete -c linepool -n "__fish_linepool_using_subcommand load; and not __fish_seen_subcommand_from compare help" -l payload -d 'Length of each request line in bytes, newline not counted' -r
complete -c linepool -n "__fish_linepool_using_subcommand load; and not __fish_seen_subcommand_from compare help" -l max-in-flight -d 'Arrivals (-R with --connect-per-request): the most connections in flight at once; an arrival past it is counted as dropped, not delayed. -c is not used' -r
complete -c linepool -n "__fish_linepool_using_subcommand load; and not __fish_seen_subcommand_from compare help" -l idle -d 'Also hold this many idle connections open for the whole run' -r
complete -c linepool -n "__fish_linepool_using_subcommand load; and not __fish_seen_subcommand_from compare help" -l timeout -d 'How long a connect or a reply may take before it counts as a timeout (`5`, `500ms`); for arrivals, the whole connection: connect, request and reply, from when it was due' -r
complete -c linepool -n "__fish_linepool_using_subcommand load; and not __fish_seen_subcommand_from compare help" -l threads -d 'Event-loop threads driving the connections' -r
complete -c linepool -n "__fish_linepool_using_subcommand load; and not __fish_seen_subcommand_from compare help" -l protocol -d 'The server\'s protocol' -r -f -a "ack\t'Lines answered with `ACK: <line>`'
framed\t'Length-prefixed messages echoed back'
chat\t'A chat room: each connection is a member that says lines (`-R` in all, 1 a second each by default) and checks what the others said'"
complete -c linepool -n "__fish_linepool_using_subcommand load; and not __fish_seen_subcommand_from compare help" -l hgrm -d 'Also write the latency percentile spectrum to FILE, in the `.hgrm` text format (microseconds), as wrk2\'s --latency and HdrHistogram print it' -r -F
complete -c linepool -n "__fish_linepool_using_subcommand load; and not __fish_seen_subcommand_from compare help" -l html -d 'Also write the run as one self-contained HTML page with charts to FILE' -r -F
complete -c linepool -n "__fish_linepool_using_subcommand load; and not __fish_seen_subcommand_from compare help" -l spread -d '`chat`: spread the members over these addresses in turn (`127.0.0.1:8001,127.0.0.1:8002`: the instances of one room) instead of --host and --port' -r
complete -c linepool -n "__fish_linepool_using_subcommand load; and not __fish_seen_subcommand_from compare help" -l tls-ca -d 'CA certificates (PEM) the server\'s certificate must chain to' -r -F
complete -c linepool -n "__fish_linepool_using_subcommand load; and not __fish_seen_subcommand_from compare help" -l tls-cert -d 'A client certificate chain to present (PEM); needs --tls-key' -r -F
complete -c linepool -n "__fish_linepool_using_subcommand load; and not __fish_seen_subcommand_from compare help" -l tls-key -d 'The private key of --tls-cert (PEM)' -r -F
complete -c linepool -n "__fish_linepool_using_subcommand load; and not __fish_seen_subcommand_from compare help" -l tls-server-name -d 'The name the server\'s certificate must carry [default: --host]' -r
complete -c linepool -n "__fish_linepool_using_subcommand load; and not __fish_seen_subcommand_from compare help" -l connect-per-request -d 'Open a fresh connection for every request: connect, one line, read the ACK, close'
complete -c linepool -n "__fish_linepool_using_subcommand load; and not __fish_seen_subcommand_from compare help" -l json -d 'Print the report as one JSON object'
complete -c linepool -n "__fish_linepool_using_subcommand load; and not __fish_seen_subcommand_from compare help" -l tls -d 'Speak TLS, verifying the server\'s certificate (against --tls-ca, or the system\'s roots)'
complete -c linepool -n "__fish_linepool_using_subcommand load; and not __fish_seen_subcommand_from compare help" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c linepool -n "__fish_linepool_using_subcommand load; and not __fish_seen_subcommand_from compare help" -f -a "compare" -d 'Set load reports (`--json` output) side by side: rates and percentiles with their ratios to the first'
complete -c linepool -n "__fish_linepool_using_subcommand load; and not __fish_seen_subcommand_from compare help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c linepool -n "__fish_linepool_using_subcommand load; and __fish_seen_subcommand_from compare" -l html -d 'Also write a page overlaying the runs\' spectra and rates to FILE' -r -F
complete -c linepool -n "__fish_linepool_using_subcommand load; and __fish_seen_subcommand_from compare" -l svg -d 'Also write the runs\' percentile spectra, overlaid, as one SVG file' -r -F
complete -c linepool -n "__fish_linepool_using_subcommand load; and __fish_seen_subcommand_from compare" -l title -d 'The title of the page and the SVG chart' -r
complete -c linepool -n "__fish_linepool_using_subcommand load; and __fish_seen_subcommand_from compare" -s h -l help -d 'Print help'
complete -c linepool -n "__fish_linepool_using_subcommand load; and __fish_seen_subcommand_from help" -f -a "compare" -d 'Set load reports (`--json` output) side by side: rates and percentiles with their ratios to the first'
complete -c linepool -n "__fish_linepool_using_subcommand load; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c linepool -n "__fish_linepool_using_subcommand client" -l host -d 'Server host name or address' -r
complete -c linepool -n "__fish_linepool_using_subcommand client" -l port -d 'Server port' -r
complete -c linepool -n "__fish_linepool_using_subcommand client" -l protocol -d 'The server\'s protocol' -r -f -a "ack\t'Every line gets `ACK: <line>` back'
chat\t'A chat room'
framed\t'Length-prefixed echo'
sum\t'The number exchange'"
complete -c linepool -n "__fish_linepool_using_subcommand client" -l name -d '`--protocol sum` only: the client name sent with each number [default: Client of linepool]' -r
complete -c linepool -n "__fish_linepool_using_subcommand client" -l tls-ca -d 'CA certificates (PEM) the server\'s certificate must chain to' -r -F
complete -c linepool -n "__fish_linepool_using_subcommand client" -l tls-cert -d 'A client certificate chain to present (PEM); needs --tls-key' -r -F
complete -c linepool -n "__fish_linepool_using_subcommand client" -l tls-key -d 'The private key of --tls-cert (PEM)' -r -F
complete -c linepool -n "__fish_linepool_using_subcommand client" -l tls-server-name -d 'The name the server\'s certificate must carry [default: --host]' -r
complete -c linepool -n "__fish_linepool_using_subcommand client" -l tls -d 'Speak TLS, verifying the server\'s certificate (against --tls-ca, or the system\'s roots)'
complete -c linepool -n "__fish_linepool_using_subcommand client" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c linepool -n "__fish_linepool_using_subcommand admin" -l socket -d 'The server\'s admin console socket (`serve --admin-socket`)' -r -F
complete -c linepool -n "__fish_linepool_using_subcommand admin" -s h -l help -d 'Print help'
complete -c linepool -n "__fish_linepool_using_subcommand completions" -s h -l help -d 'Print help'
complete -c linepool -n "__fish_linepool_using_subcommand generate-dist" -s h -l help -d 'Print help'
complete -c linepool -n "__fish_linepool_using_subcommand help; and not __fish_seen_subcommand_from serve load client admin completions generate-dist help" -f -a "serve" -d 'Serve the line protocol: every line gets `ACK: <line>` back'
complete -c linepool -n "__fish_linepool_using_subcommand help; and not __fish_seen_subcommand_from serve load client admin completions generate-dist help" -f -a "load" -d 'Drive load against a running server, checking every reply'
complete -c linepool -n "__fish_linepool_using_subcommand help; and not __fish_seen_subcommand_from serve load client admin completions generate-dist help" -f -a "client" -d 'Talk to a server: input lines go out, what it sends is printed'
complete -c linepool -n "__fish_linepool_using_subcommand help; and not __fish_seen_subcommand_from serve load client admin completions generate-dist help" -f -a "admin" -d 'Send one command to a running server\'s admin console (`serve --admin-socket`): `show info|conns|config`, `set SETTING VALUE`, `kill ID`, `pause`, `resume`, `drain`, `reload`, `stop`'
complete -c linepool -n "__fish_linepool_using_subcommand help; and not __fish_seen_subcommand_from serve load client admin completions generate-dist help" -f -a "completions" -d 'Print a shell\'s completion script (`linepool completions bash`)'
complete -c linepool -n "__fish_linepool_using_subcommand help; and not __fish_seen_subcommand_from serve load client admin completions generate-dist help" -f -a "generate-dist" -d 'Write the man pages and completions into a folder (for packaging)'
complete -c linepool -n "__fish_linepool_using_subcommand help; and not __fish_seen_subcommand_from serve load client admin completions generate-dist help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c linepool -n "__fish_linepool_using_subcommand help; and __fish_seen_subcommand_from load" -f -a "compare" -d 'Set load reports (`--json` output) side by side: rates and percentiles with their ratios to the first'
