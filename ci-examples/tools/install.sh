#!/usr/bin/env bash
# Install the CI tools pinned beside this script (package.json and its
# package-lock.json, integrity hashes from the npm registry) with `npm ci`
# into the harness cache -- never a global npm package -- and print the
# directory whose node_modules/.bin holds them:
#   gitlab-ci-local 4.65.0   runs ci-examples/gitlab-ci/gitlab-ci.yml here
#                            (tests/ci/test_gitlab_pipeline.py); it needs rsync
#                            and git.  Not newer: 4.75.x stops at start-up on
#                            Node 20 (it calls Set.prototype.union, Node 22+).
#   @action-validator/cli    checks ci-examples/github-actions/igvm-nightly.yml
#   0.6.0                    (tests/ci/test_github_workflow.py)
#
#   install.sh           install when missing (setup.sh runs this), print the directory
#   install.sh --check   print the directory, or say what is missing and exit 1
#
# The cache entry is keyed by the two files' SHA-256, so changing a pin
# installs beside the old entry; it is built aside and renamed into place.
set -euo pipefail
here="$(dirname "$(readlink -f "$0")")"
cache="${IGVM_HARNESS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/igvm-harness}"
key="$(cat "$here/package.json" "$here/package-lock.json" | sha256sum | cut -c1-16)"
dest="$cache/ci-tools/$key"
MIN_NODE=18   # gitlab-ci-local 4.65.0's engines field; Debian 12 ships Node 18

say() { printf 'ci-tools: %s\n' "$*" >&2; }

installed() {
    [ -f "$dest/.installed" ] &&
        [ -x "$dest/node_modules/.bin/gitlab-ci-local" ] &&
        [ -x "$dest/node_modules/.bin/action-validator" ]
}

node_ok() {
    local major
    if ! command -v node >/dev/null 2>&1; then
        say "no node on PATH (setup.sh installs Debian's nodejs and npm)"; return 1
    fi
    major="$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)"
    if [ "$major" -lt "$MIN_NODE" ]; then
        say "node $(node --version) is older than $MIN_NODE, which gitlab-ci-local 4.65.0 needs"; return 1
    fi
}

node_ok || exit 1
if installed; then
    printf '%s\n' "$dest"
    exit 0
fi
if [ "${1:-}" = "--check" ]; then
    say "gitlab-ci-local and action-validator are not installed in $dest (run ./setup.sh, or $0)"
    exit 1
fi
if ! command -v npm >/dev/null 2>&1; then
    say "no npm on PATH (setup.sh installs Debian's npm)"; exit 1
fi
mkdir -p "$cache/ci-tools"
tmp="$(mktemp -d "$cache/ci-tools/.partial-XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
cp "$here/package.json" "$here/package-lock.json" "$tmp/"
say "npm ci (gitlab-ci-local, @action-validator/cli) into $dest"
# --ignore-scripts: none of the pinned packages has an install script, and
# none may run one unseen; the lock file is the whole list of what is fetched.
(cd "$tmp" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >&2)
touch "$tmp/.installed"
if ! mv -T "$tmp" "$dest" 2>/dev/null; then
    installed || { say "cannot move the install into $dest"; exit 1; }  # else: a concurrent install won
fi
printf '%s\n' "$dest"
