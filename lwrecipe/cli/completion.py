"""`completion bash|zsh`: shell completion, generated from the command line parser
itself, so it never lists a command or an option lwrecipe does not have."""

from __future__ import annotations

import argparse

from .common import EPILOG, Context

BASH = r"""# bash completion for lwrecipe, made by `lwrecipe completion bash`:
#   lwrecipe completion bash > /etc/bash_completion.d/lwrecipe   (or source it from ~/.bashrc)
_lwrecipe() {
  local cur="${COMP_WORDS[COMP_CWORD]}" prev="${COMP_WORDS[COMP_CWORD-1]}" path="" w i
  for ((i = 1; i < COMP_CWORD; i++)); do
    w="${COMP_WORDS[i]}"
    case "$w" in
      -*) ;;
      *) case " @VALUED@ " in *" ${COMP_WORDS[i-1]} "*) continue ;; esac
         if _lwrecipe_words "$path" | grep -qx -- "$w"; then path="${path:+$path }$w"; else break; fi ;;
    esac
  done
  case " @VALUED@ " in
    *" $prev "*) COMPREPLY=($(compgen -f -- "$cur")); return ;;
  esac
  if [[ "$cur" == -* ]]; then
    COMPREPLY=($(compgen -W "$(_lwrecipe_options "$path")" -- "$cur"))
    return
  fi
  local words
  words="$(_lwrecipe_words "$path")"
  if [ -n "$words" ]; then
    COMPREPLY=($(compgen -W "$words" -- "$cur"))
    return
  fi
  local root="$PWD" names=""
  while [ "$root" != / ] && [ ! -f "$root/lwrecipe.toml" ]; do root="$(dirname "$root")"; done
  if [ -d "$root/recipes" ]; then
    names="$(cd "$root/recipes" && for f in *.toml; do [ -e "$f" ] && printf '%s\n' "${f%.toml}"; done)"
  fi
  COMPREPLY=($(compgen -W "$names" -- "$cur") $(compgen -f -- "$cur"))
}
_lwrecipe_words() {
  case "$1" in
@WORDS@
  esac
}
_lwrecipe_options() {
  case "$1" in
@OPTIONS@
  esac
}
complete -o filenames -F _lwrecipe lwrecipe
"""

ZSH = """#compdef lwrecipe
# zsh completion for lwrecipe, made by `lwrecipe completion zsh` (bash's, through bashcompinit):
#   lwrecipe completion zsh > "${fpath[1]}/_lwrecipe"   (or source it from ~/.zshrc)
autoload -U +X bashcompinit && bashcompinit
"""


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("completion", help="print shell completion for bash or zsh", epilog=EPILOG)
    p.add_argument("shell", choices=("bash", "zsh"))
    p.set_defaults(func=cmd_completion)


def _walk(parser: argparse.ArgumentParser, path: str, found: dict[str, tuple[list[str], list[str]]]) -> None:
    """Each command path ("", "cache", "cache push") with its subcommands and options."""
    words: list[str] = []
    options: list[str] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                words.append(name)
                _walk(child, f"{path} {name}".strip(), found)
        else:
            options += [o for o in action.option_strings if o.startswith("--") or len(action.option_strings) == 1]
    found[path] = (words, options)


def _valued(parser: argparse.ArgumentParser) -> set[str]:
    """Options that take a value (their next word is not a command)."""
    valued = set()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                valued |= _valued(child)
        elif action.option_strings and action.nargs != 0:
            valued |= set(action.option_strings)
    return valued


def bash_script(parser: argparse.ArgumentParser) -> str:
    found: dict[str, tuple[list[str], list[str]]] = {}
    _walk(parser, "", found)
    words = "\n".join(f'    "{path}") echo "{chr(10).join(w)}" ;;' for path, (w, _) in sorted(found.items()) if w)
    options = "\n".join(f'    "{path}") echo "{" ".join(o)}" ;;' for path, (_, o) in sorted(found.items()))
    return (
        BASH.replace("@WORDS@", words)
        .replace("@OPTIONS@", options)
        .replace("@VALUED@", " ".join(sorted(_valued(parser))))
    )


def cmd_completion(ctx: Context) -> int:
    script = bash_script(ctx.args.root_parser)
    ctx.out((ZSH + script) if ctx.args.shell == "zsh" else script.rstrip("\n"))
    return 0
