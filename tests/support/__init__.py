"""What the tests and benchmarks share, one module per kind of thing:

- net: free and closed ports (TCP, UDP), waiting, a plain GET, polling a URL,
  the sockets this process holds
- faults: listeners that misbehave (accept and hang, close at once, garbage),
  a silent UDP port, a DNS server of one rcode, a TCP path to cut, a hung
  filesystem, a paused process
- certificates: self-signed, CA-signed, expiring or expired
- apps: the HTTP target, a dependency whose health flips, serving an app
- checks: a check built and run in the test's process, through the real loader
- every_type: every registered check type pointed at a port (the guards' table)
- netns: network namespaces of the icmp tests' own, and checks run inside them
- daemon: a Daemon in the test's process, and hand-made results for its store
- probed: probed run as a user runs it (a command, or `probed serve` on a config)
- servers: throwaway dependency servers, one module per server
"""
