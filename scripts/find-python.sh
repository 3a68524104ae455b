#!/usr/bin/env bash
# Prints the path of a working Python interpreter of version $1 (e.g. 3.12), or nothing.
# pyenv shims exist for versions that are not selected: try each candidate for real.
want="$1"
for candidate in "$(command -v "python$want" 2>/dev/null)" \
                 "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$want".*/bin/"python$want" \
                 /usr/bin/"python$want" /usr/local/bin/"python$want"; do
  [ -n "$candidate" ] && [ -x "$candidate" ] || continue
  if "$candidate" -c 'import sys, venv' >/dev/null 2>&1; then
    echo "$candidate"
    exit 0
  fi
done
exit 0
