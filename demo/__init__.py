"""`make demo` / `python -m demo`: the daily Cloud Function run, end to end, on this machine.

Two CNCF Distribution registries on loopback stand in for Docker Hub ("upstream", anonymous
pull, Bearer tokens) and Quay ("target", robot credentials required); a local Secret Manager
holds the target's credentials. The demo seeds upstream with small multi-platform images under
the real names, writes a config like `image-sync-config.json` for those hosts, shows
`image-sync status`, runs `main.py` under `functions-framework` and calls it the way Cloud
Scheduler does, shows the status again, moves one upstream tag and calls the function once more.
No cloud account and no network beyond loopback; every process it starts is stopped (by PID)
and its temp directory removed, also on Ctrl-C and on errors.

Modules: `plan` (the images, tags and config), `tools` (finding the programs), `console`
(numbered steps and timing), `function` (the functions-framework process and the Scheduler-style
call), `run` (the steps).
"""
