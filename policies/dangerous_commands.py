"""Dangerous commands: block shell tool calls that would destroy work, history or a machine.

A model driving a coding agent runs shell commands unattended. One ``git reset --hard``, ``rm -rf``
or ``curl … | sh`` can throw away hours of uncommitted work, rewrite published history, or run code
nobody has read. This reactor judges every call of a shell tool (Claude Code ``Bash``, Codex
``exec_command``/``shell``, Gemini CLI ``run_shell_command``, …) before the agent sees it and blocks
the ones whose shape is destructive: git commands that discard uncommitted changes or delete and
rewrite history, recursive forced deletes, downloads piped into an interpreter, fork bombs, new
filesystems, raw writes to disks or ``/etc``, recursive ``chmod`` of ``/``, and killing every process.

Why a normaliser rather than regexes over the raw text: a rule for ``rm -rf`` must also see
``r\\m -rf``, ``'rm' -rf``, ``sudo env X=1 rm -rf``, ``bash -lc "cd x && rm -rf y"``, ``git -C dir
reset --hard``, ANSI escapes and fullwidth letters — while ``echo "rm -rf /"`` and ``grep "reset
--hard" notes.md`` stay harmless, because there the words are quoted arguments, not commands. So the
text is cleaned (escapes, NUL, invisible characters, NFKC), split by a small shell-word lexer (quotes
decide what is one argument; ``$(…)``, backticks and heredocs are understood), cut at ``;``, ``&&``,
``||``, ``|`` and newlines, and each simple command is peeled of assignments, prefixes (``sudo``,
``env``, ``nohup``, ``time``, ``exec``, …), path and git global options until it reads ``program
args…``. Shell wrappers (``sh -c``, ``bash -lc``, ``eval``, ``ssh host cmd``, ``find -exec``) and
command substitutions are judged recursively, to a bounded depth. The rules — a table, ``RULES`` —
then look at that program, its flags and operands.

Cost is bounded: only the first ``MAX_COMMAND`` characters are judged, nesting deeper than
``MAX_DEPTH`` is blocked rather than followed, and every regex is compiled once (the config's at
validation time).
"""

from __future__ import annotations

import functools
import json
import re
import shlex
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Annotated, NamedTuple

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationInfo, field_validator

from policies.base import ALLOW, Call, Context, Verdict

NAME = "dangerous_commands"
MAX_COMMAND = 64 * 1024  # characters of one command that are judged; the rest is ignored
MAX_DEPTH = 6  # shells, wrappers and substitutions nested deeper than this are blocked unjudged
REASON_SEGMENT = 120  # characters of the offending segment quoted in a verdict's reason

# Tool names of the agents' shell tools, as they declare them.
SHELL_TOOLS = (
    "Bash",  # Claude Code: {"command": "..."}
    "exec_command",  # Codex CLI: {"cmd": "..."}
    "shell",  # Codex CLI: {"command": ["bash", "-lc", "..."]}
    "shell_command",  # Codex CLI, older releases: {"command": "..."}
    "local_shell",  # OpenAI local shell: {"action": {"command": [...]}} or {"command": [...]}
    "run_shell_command",  # Gemini CLI: {"command": "..."}
    "bash",
    "execute_command",  # Cline, Roo Code
    "run_terminal_cmd",  # Cursor
    "run_in_terminal",  # GitHub Copilot
    "execute_bash",  # OpenHands
    "run_command",
)
COMMAND_KEYS = ("command", "cmd", "input")  # where shell tools put the command; "args" below


# --------------------------------------------------------------------------------------------
# Configuration


def compile_regex(value: object, what: str) -> object:
    """A string compiled, with an error that names the rule; anything else is left to pydantic."""
    if not isinstance(value, str):
        return value
    try:
        return re.compile(value)
    except re.error as error:
        raise ValueError(f"{what}: invalid regex {value!r}: {error}") from None


AllowRegex = Annotated[re.Pattern[str], BeforeValidator(lambda value: compile_regex(value, "allow"))]


class ExtraRule(BaseModel):
    """A rule of the user's: a regex searched in every normalised segment."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    regex: re.Pattern[str]

    @field_validator("regex", mode="before")
    @classmethod
    def _compile(cls, value: object, info: ValidationInfo) -> object:
        return compile_regex(value, f"rule {info.data.get('name', '?')!r}")


class DangerousCommandsConfig(BaseModel):
    """``policies.dangerous_commands`` in the configuration."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    shell_tools: list[str] = Field(default_factory=lambda: list(SHELL_TOOLS))
    # Searched in each normalised segment (``program args…`` after unwrapping, see module docstring).
    extra_rules: list[ExtraRule] = Field(default_factory=list)
    # A segment any of these regexes finds is exempt from every rule. ``rm`` is presented once per
    # operand as ``rm -rf <operand>`` (flags canonical), so ``^rm -rf (\./)?build\b`` exempts
    # ``rm -fr ./build`` but not ``rm -rf ./build /``; an operand with a ``..`` component is never exempt.
    allow: list[AllowRegex] = Field(default_factory=list)


# --------------------------------------------------------------------------------------------
# Normalising the text

ESCAPES = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"  # CSI: colours, cursor movement
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"  # OSC: window titles, hyperlinks
    r"|\x1b[@-Z\\-_]?"  # other two-character escapes, a lone ESC
    r"|\x9b[0-?]*[ -/]*[@-~]"  # 8-bit CSI
)
INVISIBLE = re.compile(
    "[\x01-\x08\x0b-\x1f\x7f-\x9f\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff]"
)


def normalise(text: str) -> str:
    """The text as a reader sees it: no NUL, no terminal escapes, no invisible characters, NFKC."""
    text = unicodedata.normalize("NFKC", text[:MAX_COMMAND].replace("\x00", ""))[:MAX_COMMAND]
    return INVISIBLE.sub("", ESCAPES.sub("", text).replace("\r\n", "\n"))


# --------------------------------------------------------------------------------------------
# Lexing: shell words and operators


class Token(NamedTuple):
    text: str
    op: bool  # an operator (``;``, ``&&``, ``|``, ``>``, ``(``, newline, …) rather than a word


OPERATOR = re.compile(r";;&|;;|;&|&&|\|\||\|&|&>>|&>|>>|>\||>&|<<<|<<-|<<|<>|<&|[;&|<>()]")
PLAIN = re.compile(r"[^ \t\n\\'\"$`<>|&;()]+")
DQ_PLAIN = re.compile(r'[^"\\$`]+')
DQ_ESCAPABLE = '$`"\\\n'
ANSI_C_ESCAPE = re.compile(
    r"\\(x[0-9a-fA-F]{1,2}|u[0-9a-fA-F]{1,4}|U[0-9a-fA-F]{1,8}|[0-7]{1,3}|c.|.)", re.DOTALL
)
ANSI_C_NAMED = {"n": "\n", "t": "\t", "r": "\r", "a": "\a", "b": "\b", "e": "\x1b", "E": "\x1b",
                "f": "\f", "v": "\v"}  # fmt: skip
BACKTICK_ESCAPE = re.compile(r"\\([`$\\])")


def decode_ansi_c(match: re.Match[str]) -> str:
    code = match.group(1)
    if code[0] in "xuU" and len(code) > 1:
        return chr(min(int(code[1:], 16), 0x10FFFF))
    if code[0] in "01234567":
        return chr(int(code, 8))
    if code[0] == "c" and len(code) == 2:
        return chr(ord(code[1]) & 0x1F)
    return ANSI_C_NAMED.get(code, code)


def balanced_end(text: str, start: int, opening: str, closing: str) -> int:
    """The index after the ``closing`` that balances the ``opening`` at ``start``."""
    depth = 0
    for index in range(start, len(text)):
        depth += (text[index] == opening) - (text[index] == closing)
        if depth == 0:
            return index + 1
    return len(text)


def read_heredoc(text: str, start: int, delimiter: str, strip_tabs: bool) -> tuple[str, int]:
    """The body of a heredoc starting at ``start`` and the index after its delimiter line."""
    lines, index = [], start
    while index < len(text):
        end = text.find("\n", index)
        end = len(text) if end < 0 else end
        line, index = text[index:end], end + 1
        if (line.lstrip("\t") if strip_tabs else line) == delimiter:
            break
        lines.append(line)
    return "\n".join(lines), min(index, len(text))


class Lexer:
    """Splits shell text into words (quotes removed, as the shell passes them) and operators.

    Command substitutions (``$(…)``, backticks, ``<(…)``) stay literally in their word and their
    commands are lexed too, into ``nested``. Heredoc bodies become the word after ``<<``.
    """

    def __init__(self, text: str, start: int = 0, level: int = 0) -> None:
        self.text, self.i, self.level = text, start, level
        self.tokens: list[Token] = []
        self.nested: list[list[Token]] = []
        self.too_deep = False
        self.word: list[str] | None = None
        self.quoted = False
        self.parens = 0
        self.delimiter_for: bool | None = None  # after << or <<-: whether tabs are stripped
        self.heredocs: list[tuple[int, str, bool, bool]] = []  # token index, delimiter, tabs, expand

    def run(self, closing: bool = False) -> Lexer:
        while self.i < len(self.text):
            if closing and self.text[self.i] == ")" and self.parens == 0:
                self.i += 1
                break
            self.step(self.text[self.i])
        self.end_word()
        for index, *_ in self.heredocs:  # unterminated: no body
            self.tokens[index] = Token("", False)
        return self

    def step(self, c: str) -> None:
        if c in " \t":
            self.end_word()
            self.i += 1
        elif c == "\n":
            self.end_word()
            self.tokens.append(Token("\n", True))
            self.i += 1
            self.read_heredocs()
        elif c == "#" and self.word is None:
            end = self.text.find("\n", self.i)
            self.i = len(self.text) if end < 0 else end
        elif c == "\\":
            self.backslash()
        elif c == "'":
            self.single_quoted()
        elif c == '"':
            self.i += 1
            self.double_quoted('"')
        elif c == "$":
            self.dollar(quoted=False)
        elif c == "`":
            self.backtick()
        elif c in "<>" and self.text.startswith("(", self.i + 1):
            self.substitution(2)  # process substitution
        elif c in "<>|&;()":
            self.operator()
        else:
            match = PLAIN.match(self.text, self.i)
            self.add(match.group() if match else c)
            self.i = match.end() if match else self.i + 1

    def add(self, text: str) -> None:
        if self.word is None:
            self.word = []
        self.word.append(text)

    def end_word(self) -> None:
        if self.word is None:
            return
        text, self.word = "".join(self.word), None
        if self.delimiter_for is not None:
            self.heredocs.append((len(self.tokens), text, self.delimiter_for, not self.quoted))
            self.delimiter_for = None
        self.tokens.append(Token(text, False))
        self.quoted = False

    def backslash(self) -> None:
        following = self.text[self.i + 1 : self.i + 2]
        if following != "\n":  # a backslash-newline joins lines
            self.add(following)
            self.quoted = True
        self.i += 2

    def single_quoted(self) -> None:
        end = self.text.find("'", self.i + 1)
        end = len(self.text) if end < 0 else end
        self.add(self.text[self.i + 1 : end])
        self.quoted, self.i = True, end + 1

    def double_quoted(self, end: str | None) -> None:
        """From after an opening quote to after its closing one (``end=None``: to the end)."""
        self.add("")
        self.quoted = True
        text = self.text
        while self.i < len(text):
            c = text[self.i]
            if c == end:
                self.i += 1
                return
            if c == "\\":
                following = text[self.i + 1 : self.i + 2]
                escaped = following and following in DQ_ESCAPABLE
                self.add(following.strip("\n") if escaped else "\\")
                self.i += 2 if escaped else 1
            elif c == "$":
                self.dollar(quoted=True)
            elif c == "`":
                self.backtick()
            else:
                match = DQ_PLAIN.match(text, self.i)
                self.add(match.group() if match else c)
                self.i = match.end() if match else self.i + 1

    def dollar(self, quoted: bool) -> None:
        text, i = self.text, self.i
        following = text[i + 1 : i + 2]
        if text.startswith("((", i + 1):  # arithmetic: no commands, no heredocs (``1<<2``)
            self.i = balanced_end(text, i + 1, "(", ")")
            self.add(text[i : self.i])
        elif following == "(":
            self.substitution(2)
        elif following == "{":
            self.i = balanced_end(text, i + 1, "{", "}")
            self.add(text[i : self.i])
        elif following == "'" and not quoted:
            self.ansi_c()
        elif following == '"' and not quoted:
            self.i += 2
            self.double_quoted('"')
        else:
            self.add("$")
            self.i += 1

    def ansi_c(self) -> None:
        end = self.i + 2
        while end < len(self.text) and self.text[end] != "'":
            end += 2 if self.text[end] == "\\" else 1
        self.add(ANSI_C_ESCAPE.sub(decode_ansi_c, self.text[self.i + 2 : end]))
        self.quoted, self.i = True, end + 1

    def substitution(self, skip: int) -> None:
        """``$(…)``, ``<(…)`` or ``>(…)``: lexed as a nested script up to its closing paren."""
        start = self.i
        if self.level >= MAX_DEPTH:
            self.too_deep, self.i = True, len(self.text)
            return
        inner = Lexer(self.text, start + skip, self.level + 1).run(closing=True)
        self.adopt(inner)
        self.i = inner.i
        self.add(self.text[start : self.i])

    def backtick(self) -> None:
        end = self.i + 1
        while end < len(self.text) and self.text[end] != "`":
            end += 2 if self.text[end] == "\\" else 1
        raw, start = self.text[self.i : end + 1], self.i
        self.i = end + 1
        if self.level >= MAX_DEPTH:
            self.too_deep, self.i = True, len(self.text)
            return
        inner_text = BACKTICK_ESCAPE.sub(r"\1", self.text[start + 1 : end])
        self.adopt(Lexer(inner_text, 0, self.level + 1).run())
        self.add(raw)

    def adopt(self, inner: Lexer) -> None:
        self.nested.append(inner.tokens)
        self.nested.extend(inner.nested)
        self.too_deep = self.too_deep or inner.too_deep

    def operator(self) -> None:
        match = OPERATOR.match(self.text, self.i)
        op = match.group() if match else self.text[self.i]
        word = "".join(self.word) if self.word is not None else ""
        if word.isdigit() and op[0] in "<>" and not self.quoted:  # 2>, 1>>, 0<
            op, self.word = word + op, None
        else:
            self.end_word()
        self.i += len(match.group()) if match else 1
        if op == "(":
            self.parens += 1
        elif op == ")":
            self.parens = max(0, self.parens - 1)
        self.tokens.append(Token(op, True))
        if op.lstrip("0123456789") in ("<<", "<<-"):
            self.delimiter_for = op.endswith("-")

    def read_heredocs(self) -> None:
        for index, delimiter, strip_tabs, expand in self.heredocs:
            body, self.i = read_heredoc(self.text, self.i, delimiter, strip_tabs)
            self.tokens[index] = Token(body, False)
            if expand:  # an unquoted delimiter: $(…) in the body runs
                expansions = Lexer(body, 0, self.level)
                expansions.double_quoted(None)
                self.nested.extend(expansions.nested)
                self.too_deep = self.too_deep or expansions.too_deep
        self.heredocs.clear()


# --------------------------------------------------------------------------------------------
# Parsing: pipelines of simple commands, unwrapped to ``program args…``

PIPES = frozenset({"|", "|&"})
REDIRECTS = frozenset({">", ">>", ">|", "&>", "&>>", "<", "<>", "<<", "<<-", "<<<", ">&", "<&"})
HERE_OPS = frozenset({"<<", "<<-", "<<<"})
KEYWORDS = frozenset({"!", "{", "}", "if", "then", "else", "elif", "fi", "do", "done", "while", "until",
                      "esac", "coproc"})  # fmt: skip
ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\+?=.*", re.DOTALL)
SUBSTITUTION_STARTS = ("$(", "`", "<(", ">(")
SHELLS = frozenset({"sh", "bash", "zsh", "dash", "ksh", "mksh", "ash", "fish"})
DOWNLOADERS = frozenset({"curl", "wget", "fetch"})
ECHOES = frozenset({"echo", "printf"})
DELETERS = frozenset({"rm", "shred", "unlink", "rmdir"})
FIND_EXEC = frozenset({"-exec", "-execdir", "-ok", "-okdir"})


@dataclass
class Stage:
    """One simple command of a pipeline, as lexed: its words and its redirections."""

    words: list[str] = field(default_factory=list)
    redirects: list[tuple[str, str]] = field(default_factory=list)


def is_redirect(op: str) -> bool:
    return op.lstrip("0123456789") in REDIRECTS


def pipelines(tokens: Sequence[Token]) -> list[list[Stage]]:
    """Cuts tokens at ``;``, ``&&``, ``||``, ``&``, newlines and parens; stages joined by ``|``."""
    result: list[list[Stage]] = []
    stages: list[Stage] = []
    current = Stage()
    index = 0
    while index < len(tokens):
        token = tokens[index]
        if not token.op:
            current.words.append(token.text)
        elif is_redirect(token.text):
            has_target = index + 1 < len(tokens) and not tokens[index + 1].op
            current.redirects.append((token.text, tokens[index + 1].text if has_target else ""))
            index += has_target
        elif token.text in PIPES:
            stages.append(current)
            current = Stage()
        else:
            result.append([*stages, current])
            stages, current = [], Stage()
        index += 1
    result.append([*stages, current])
    return [kept for stages in result if (kept := [s for s in stages if s.words or s.redirects])]


@dataclass(frozen=True)
class Prefix:
    """A command that runs the command after its own options (``sudo``, ``env``, ``nohup``, …)."""

    valued: frozenset[str] = frozenset()  # its options that take the next word as their value
    positional: int = 0  # its operands before the command (``timeout 10 cmd``)
    assignments: bool = False  # ``NAME=value`` words may come before the command (``env``)
    scripts: frozenset[str] = frozenset()  # options whose value is a command line (``env -S``)


def words_set(text: str) -> frozenset[str]:
    return frozenset(text.split())


PREFIXES: dict[str, Prefix] = {
    "sudo": Prefix(words_set("-u -g -h -p -C -D -r -t -U -T --user --group --host --prompt --chdir"
                             " --role --type --other-user --close-from --command-timeout")),
    "doas": Prefix(words_set("-u -C")),
    "env": Prefix(words_set("-u --unset -C --chdir"), assignments=True,
                  scripts=words_set("-S --split-string")),
    "command": Prefix(),
    "builtin": Prefix(),
    "nohup": Prefix(),
    "setsid": Prefix(),
    "unbuffer": Prefix(),
    "busybox": Prefix(),
    "exec": Prefix(words_set("-a")),
    "time": Prefix(words_set("-f --format -o --output")),
    "nice": Prefix(words_set("-n --adjustment")),
    "ionice": Prefix(words_set("-c -n --class --classdata")),
    "timeout": Prefix(words_set("-s --signal -k --kill-after"), positional=1),
    "stdbuf": Prefix(words_set("-i -o -e")),
    "xargs": Prefix(words_set("-I -L -n -P -d -E -s -a --max-args --max-procs --delimiter --arg-file"
                              " --max-lines --max-chars --eof --replace")),
}  # fmt: skip
GIT_VALUED = words_set("-C -c --git-dir --work-tree --namespace --config-env --super-prefix")
SHELL_VALUED = words_set("-o -O +o +O --rcfile --init-file")
# Options that take the next word as their value, per program (so the value is not an operand).
VALUED: dict[str, frozenset[str]] = {
    **{shell: SHELL_VALUED for shell in SHELLS},
    "git push": words_set("-o --push-option --repo --receive-pack --exec"),
    "git clean": words_set("-e --exclude"),
    "git checkout": words_set("-b -B --orphan --conflict"),
    "git restore": words_set("-s --source"),
    "git branch": words_set("-u --set-upstream-to"),
    "kill": words_set("-s -n"),
    "ssh": words_set("-b -B -c -D -E -e -F -I -i -J -L -l -m -O -o -p -Q -R -S -W -w"),
    "su": words_set("-c --command -s --shell -g -G -w"),
    "watch": words_set("-n --interval"),
    "chmod": words_set("--reference"),
    "chown": words_set("--reference --from"),
}


def program_name(word: str) -> str:
    """``/usr/bin/git`` → ``git``; substitutions stay as written."""
    if "/" in word and not word.startswith(SUBSTITUTION_STARTS):
        return word.rsplit("/", 1)[1]
    return word


def strip_leading(words: list[str]) -> list[str]:
    """Drops leading ``NAME=value`` assignments and shell keywords (``then``, ``do``, ``!``, ``{``)."""
    index = 0
    while index < len(words) and (words[index] in KEYWORDS or ASSIGNMENT.fullmatch(words[index])):
        index += 1
    return words[index:]


def skip_prefix(words: list[str], prefix: Prefix) -> tuple[list[str], list[str]]:
    """The words after a prefix and its options, and any command line given as an option value."""
    index = 1
    while index < len(words):
        word = words[index]
        name, equals, value = word.partition("=")
        if word == "--":
            index += 1
            break
        if prefix.assignments and ASSIGNMENT.fullmatch(word):
            index += 1
        elif name in prefix.scripts:
            value = value if equals else (words[index + 1] if index + 1 < len(words) else "")
            rest = words[index + 1 + (not equals) :]
            return [], [" ".join([value, *map(shlex.quote, rest)])]
        elif word.startswith("-") and len(word) > 1:
            index += 2 if word in prefix.valued else 1
        else:
            break
    return words[index + prefix.positional :], []


def unwrap(words: list[str]) -> tuple[list[str], list[str]]:
    """The command's ``program args…`` once assignments, keywords and prefixes are peeled off, and
    the command lines found in prefix options."""
    scripts: list[str] = []
    for _ in range(len(words) + 1):  # every pass drops at least the prefix itself
        words = strip_leading(words)
        prefix = PREFIXES.get(program_name(words[0])) if words else None
        if prefix is None:
            break
        words, found = skip_prefix(words, prefix)
        scripts += found
    return words, scripts


def git_subcommand(args: Sequence[str]) -> tuple[str, Sequence[str]]:
    """``-C dir -c k=v --git-dir=x reset --hard`` → (``git reset``, ``--hard``)."""
    index = 0
    while index < len(args) and args[index].startswith("-"):
        index += 2 if args[index] in GIT_VALUED else 1
    if index >= len(args):
        return "git", args[index:]
    return f"git {args[index]}", args[index + 1 :]


def split_options(args: Sequence[str], valued: frozenset[str]) -> tuple[frozenset[str], tuple[str, ...]]:
    """Flags (``-rf`` → ``-r``, ``-f``, ``-rf``; ``--force=x`` → ``--force``) and operands."""
    flags: set[str] = set()
    operands: list[str] = []
    index = 0
    while index < len(args):
        arg = args[index]
        if arg == "--":
            operands += args[index + 1 :]
            break
        if arg.startswith("--"):
            flags.add(arg.split("=", 1)[0])
        elif arg.startswith("-") and len(arg) > 1:
            flags.add(arg)
            for letter in arg[1:]:
                flags.add("-" + letter)
                if "-" + letter in valued:  # the rest of the cluster is its value
                    break
        else:
            operands.append(arg)
        index += 2 if arg in valued else 1
    return frozenset(flags), tuple(operands)


@dataclass(frozen=True)
class Command:
    """A simple command, normalised: ``git reset`` or ``rm`` and what follows it."""

    program: str
    args: tuple[str, ...] = ()
    redirects: tuple[tuple[str, str], ...] = ()
    flags: frozenset[str] = frozenset()
    operands: tuple[str, ...] = ()
    from_download: bool = False  # its stdin is the output of curl/wget earlier in the pipeline

    @property
    def text(self) -> str:
        """The normalised segment that ``allow`` and ``extra_rules`` regexes see."""
        redirects = [
            f"{op} {target}" for op, target in self.redirects if op.lstrip("0123456789") not in HERE_OPS
        ]
        return " ".join([self.program, *self.args, *redirects]).strip()


def make_command(argv: Sequence[str], redirects: Sequence[tuple[str, str]], downloaded: bool) -> Command:
    program = program_name(argv[0]) if argv else ""
    args: Sequence[str] = argv[1:]
    if program == "git":
        program, args = git_subcommand(args)
    flags, operands = split_options(args, VALUED.get(program, frozenset()))
    fed = any(op.endswith("<") and DOWNLOAD_SUBSTITUTION.match(target) for op, target in redirects)
    return Command(program, tuple(args), tuple(redirects), flags, operands, downloaded or fed)


# --------------------------------------------------------------------------------------------
# Wrappers: commands whose arguments hold further command lines


def reads_stdin(command: Command) -> bool:
    """Does this interpreter read its program from stdin (``sh``, ``bash -s``, ``python -``)?"""
    first = command.operands[0] if command.operands else None
    return first in (None, "-", "/dev/stdin") or "-s" in command.flags


def shell_scripts(command: Command) -> list[str]:
    """``bash -lc "…"``: the script; ``bash <<EOF`` / ``bash <<< "…"``: the text fed to it."""
    if "-c" in command.flags:
        return list(command.operands[:1])
    if reads_stdin(command):
        return [target for op, target in command.redirects if op.lstrip("0123456789") in HERE_OPS]
    return []


def option_value(args: Sequence[str], names: frozenset[str]) -> list[str]:
    for index, arg in enumerate(args):
        name, equals, value = arg.partition("=")
        if name in names:
            return [value] if equals else list(args[index + 1 : index + 2])
    return []


def find_exec_commands(args: Sequence[str]) -> list[list[str]]:
    """``find … -exec rm {} ;`` → [[rm, {}]]."""
    commands, current = [], None
    for arg in args:
        if current is not None and arg in (";", "+"):
            commands.append(current)
            current = None
        elif current is not None:
            current.append(arg)
        elif arg in FIND_EXEC:
            current = []
    return commands + ([current] if current else [])


WRAPPERS: dict[str, Callable[[Command], list[str]]] = {
    **{shell: shell_scripts for shell in SHELLS},
    "eval": lambda c: [" ".join(c.args)],
    "su": lambda c: option_value(c.args, words_set("-c --command")),
    "ssh": lambda c: [" ".join(c.operands[1:])] if len(c.operands) > 1 else [],
    "watch": lambda c: [" ".join(c.operands)] if c.operands else [],
    "find": lambda c: [shlex.join(words) for words in find_exec_commands(c.args) if words],
}


def fed_text(command: Command) -> list[str]:
    """What a command writes that we can read: its heredocs, what ``echo``/``printf`` prints."""
    texts = [target for op, target in command.redirects if op.lstrip("0123456789") in HERE_OPS]
    return texts + ([" ".join(command.operands)] if command.program in ECHOES else [])


def pipeline_commands(stages: Sequence[Stage]) -> tuple[list[Command], list[str]]:
    """The commands of a pipeline, and the command lines inside them or piped into a shell."""
    commands: list[Command] = []
    scripts: list[str] = []
    downloaded, fed = False, []
    for stage in stages:
        argv, found = unwrap(stage.words)
        command = make_command(argv, stage.redirects, downloaded)
        wrapper = WRAPPERS.get(command.program)
        scripts += found + (wrapper(command) if wrapper else [])
        if command.program in SHELLS and "-c" not in command.flags and reads_stdin(command):
            scripts += fed  # echo "…" | sh, cat <<EOF | bash
            fed = []
        commands.append(command)
        downloaded = downloaded or command.program in DOWNLOADERS
        fed += fed_text(command)
    return commands, scripts


# --------------------------------------------------------------------------------------------
# Rules: data. A rule names the programs it applies to (a regex over ``Command.program``) and a
# small matcher over the command; the reason completes the sentence "`<segment>` …".

Matcher = Callable[[Command], bool]

DOWNLOAD_SUBSTITUTION = re.compile(r"(?:\$\(|`|<\()\s*(?:sudo\s+)?(?:\S*/)?(?:curl|wget|fetch)\b", re.DOTALL)
INTERPRETERS = r"(?:ba|z|da|k|mk|a|fi)?sh|python[\d.]*|perl|ruby|node|php|pwsh|source|\."
SYSTEM_PATH = (r"/etc(?:/.*)?|/dev/(?:(?:sd|hd|vd|xvd)[a-z]+\d*|nvme\d+n\d+(?:p\d+)?|mmcblk\d+(?:p\d+)?"
               r"|r?disk\d+(?:s\d+)?|md\d+|dm-\d+|loop\d+|sr\d+|mapper/.+|mem|kmem|port)")  # fmt: skip
ROOT_PATH = r"/\*?|/(?:etc|usr|bin|sbin|lib\d*|var|boot|opt|home|root|srv|sys|proc|dev)/?|~/?|\$HOME/?"
SPARE_DEVICES = r"(?:null|zero|stdout|stderr|tty|fd/\d+)"


def flag(*names: str) -> Matcher:
    wanted = frozenset(names)
    return lambda c: not c.flags.isdisjoint(wanted)


def operand(regex: str) -> Matcher:
    pattern = re.compile(regex, re.DOTALL)
    return lambda c: any(pattern.fullmatch(o) for o in c.operands)


def first_operand(*words: str) -> Matcher:
    return lambda c: bool(c.operands) and c.operands[0] in words


def arg(regex: str) -> Matcher:
    pattern = re.compile(regex, re.DOTALL)
    return lambda c: any(pattern.fullmatch(a) for a in c.args)


def every(*matchers: Matcher) -> Matcher:
    return lambda c: all(m(c) for m in matchers)


def some(*matchers: Matcher) -> Matcher:
    return lambda c: any(m(c) for m in matchers)


def no(matcher: Matcher) -> Matcher:
    return lambda c: not matcher(c)


def always(command: Command) -> bool:
    return True


def paths_after_dashdash(command: Command) -> bool:
    return "--" in command.args[:-1]


def downloaded_into_stdin(command: Command) -> bool:
    return command.from_download and reads_stdin(command)


def execs_deleter(command: Command) -> bool:
    """``find … -exec rm {} ;`` (also ``-execdir``, ``-ok``, and with ``sudo`` before ``rm``)."""
    programs = [unwrap(words)[0][:1] for words in find_exec_commands(command.args)]
    return any(program and program_name(program[0]) in DELETERS for program in programs)


def writes_to(regex: str) -> Matcher:
    pattern = re.compile(regex, re.DOTALL)

    def matcher(command: Command) -> bool:
        return any(
            ">" in op and not (op.endswith("&") and (target.isdigit() or target == "-"))
            and pattern.fullmatch(clean_path(target))
            for op, target in command.redirects
        )  # fmt: skip

    return matcher


def clean_path(path: str) -> str:
    """``//etc/./x`` → ``/etc/x``: what a path names, for matching."""
    if not path.startswith("/"):
        return path
    parts: list[str] = []
    for part in path.split("/"):
        if part == "..":
            parts = parts[:-1]
        elif part not in ("", "."):
            parts.append(part)
    return "/" + "/".join(parts)


def kills_all(command: Command) -> bool:
    """``kill -9 -1``: after the signal, the pid ``-1`` means every process."""
    args = list(command.args)
    if args[:1] in (["-s"], ["-n"]):
        args = args[2:]
    elif args[:1] and args[0].startswith("-") and args[0] != "--":
        args = args[1:]
    return "-1" in args


@dataclass(frozen=True)
class Rule:
    name: str
    program: re.Pattern[str]  # fullmatched against ``Command.program``
    matches: Matcher
    reason: str  # what the command would do: "would …", one sentence


def rule(name: str, program: str, matches: Matcher, reason: str) -> Rule:
    return Rule(name, re.compile(program, re.DOTALL), matches, reason)


RULES: tuple[Rule, ...] = (
    rule("git_reset_hard", "git reset", flag("--hard"),
         "would discard every uncommitted change in the working tree and the index."),
    rule("git_clean_force", "git clean", every(flag("-f", "--force"), no(flag("-n", "--dry-run"))),
         "would permanently delete untracked files, which git cannot bring back."),
    rule("git_checkout_discard", "git checkout",
         some(operand(r"\.|\./|:/|\*"), paths_after_dashdash, flag("-f", "--force")),
         "would overwrite uncommitted changes to tracked files with their committed version."),
    rule("git_restore_worktree", "git restore", some(flag("-W", "--worktree"), no(flag("-S", "--staged"))),
         "would overwrite uncommitted changes in the working tree with their committed version."),
    rule("git_push_force", "git push", some(flag("-f", "--force", "--force-with-lease"), operand(r"\+.+")),
         "would overwrite the remote branch's history, discarding commits that are only there."),
    rule("git_push_delete", "git push", some(flag("-d", "--delete", "--mirror", "--prune"), operand(r":.+")),
         "would delete branches or tags on the remote."),
    rule("git_branch_force_delete", "git branch",
         some(flag("-D"), every(flag("-d", "--delete"), flag("-f", "--force"))),
         "would delete a branch even if its commits are merged nowhere else."),
    rule("git_filter_branch", "git filter-branch", always,
         "would rewrite the whole history of the repository."),
    rule("git_filter_repo", "git filter-repo", always, "would rewrite the whole history of the repository."),
    rule("git_reflog_expire", "git reflog", first_operand("expire", "delete"),
         "would delete reflog entries, the record needed to recover lost commits."),
    rule("git_gc_prune_now", "git gc", arg(r"--prune=(?:now|all)"),
         "would immediately and permanently delete unreachable commits."),
    rule("git_stash_discard", "git stash", first_operand("clear", "drop"),
         "would permanently discard stashed changes."),
    rule("git_rebase_interactive", "git rebase", flag("-i", "--interactive"),
         "would start an interactive history rewrite that waits for an editor."),
    rule("rm_recursive_force", "rm", every(flag("-r", "-R", "--recursive"), flag("-f", "--force")),
         "would recursively delete files and directories without asking."),
    rule("find_delete", "find", some(arg("-delete"), execs_deleter),
         "would delete every file the search matches."),
    rule("curl_pipe_shell", INTERPRETERS,
         some(downloaded_into_stdin, operand(DOWNLOAD_SUBSTITUTION.pattern + ".*")),
         "would download code from the network and run it unread."),
    rule("curl_pipe_shell", DOWNLOAD_SUBSTITUTION.pattern + ".*", always,
         "would download code from the network and run it unread."),
    rule("mkfs", r"mkfs(?:\..+)?|mke2fs|mkswap|wipefs", always,
         "would create a new filesystem on a device, erasing everything on it."),
    rule("dd_to_device", "dd", arg(rf"of=/dev/(?!{SPARE_DEVICES}$).+"),
         "would write raw data over a device, destroying its contents."),
    rule("redirect_to_system_path", ".*", writes_to(SYSTEM_PATH),
         "would overwrite a system configuration file or a raw disk device."),
    rule("redirect_to_system_path", "tee", operand(SYSTEM_PATH),
         "would overwrite a system configuration file or a raw disk device."),
    rule("chmod_recursive_root", "chmod|chown|chgrp", every(flag("-R", "--recursive"), operand(ROOT_PATH)),
         "would change the permissions or owner of every file under a system directory."),
    rule("kill_all", "kill", kills_all, "would kill every process the user is allowed to signal."),
)  # fmt: skip


def matching_rules(program: str) -> tuple[Rule, ...]:
    return tuple(r for r in RULES if r.program.fullmatch(program))


cached_rules = functools.lru_cache(maxsize=1024)(matching_rules)


def rules_for(program: str) -> tuple[Rule, ...]:
    """The rules whose program pattern names ``program``; cached, as few program names recur
    (long names, which a cache would keep alive, are matched afresh)."""
    return cached_rules(program) if len(program) <= 64 else matching_rules(program)


def defined_function(tokens: Sequence[Token], index: int) -> str | None:
    """The name of a function defined at ``index`` (``f()`` or ``function f``), if any."""
    a, b, c = tokens[index : index + 3]
    if not a.op and b == Token("(", True) and c == Token(")", True):
        return a.text
    if a == Token("function", False) and not b.op:
        return b.text
    return None


def fork_bomb(tokens: Sequence[Token]) -> bool:
    """A function whose body pipes itself into itself in the background: ``:(){ :|:& };:``."""
    for index in range(len(tokens) - 2):
        name = defined_function(tokens, index)
        if name is None:
            continue
        body = [t.text if t.op else t.text.strip("{}") for t in tokens[index + 2 : index + 24]]
        body = [text for text in body if text]
        if any(body[k : k + 4] == [name, "|", name, "&"] for k in range(len(body) - 3)):
            return True
    return False


# Rules over a whole lexed script rather than one command.
SCRIPT_RULES: tuple[tuple[str, Callable[[Sequence[Token]], bool], str], ...] = (
    ("fork_bomb", fork_bomb, "would spawn processes without end until the machine stops responding."),
)
TOO_DEEP = (
    "nesting_too_deep",
    f"would run shells or substitutions nested more than {MAX_DEPTH} levels deep, too deep to judge.",
)


# --------------------------------------------------------------------------------------------
# Reading the command out of a call's arguments

RAW_FIELD = re.compile(
    r"""["']?\b(?:command|cmd|input|args)["']?\s*[:=]\s*"""
    r"""(?:"((?:[^"\\]|\\.)*)"?|'([^']*)'?|\[((?:[^\]"\\]|"(?:[^"\\]|\\.)*"?|\\.)*)\]?)""",
    re.DOTALL,
)
JSON_STRING = re.compile(r'"((?:[^"\\]|\\.)*)"?', re.DOTALL)


def argv_text(items: Sequence[object]) -> str:
    return shlex.join(item if isinstance(item, str) else json.dumps(item) for item in items)


def scripts_of(value: object, depth: int = 0) -> list[str]:
    """The command lines in a tool's decoded arguments: a string, an argv list, or a dict with
    ``command``/``cmd``/``input`` (optionally ``args``, an argv tail) or ``action`` holding one."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [argv_text(value)]
    if not isinstance(value, dict) or depth > 2:
        return []
    if isinstance(value.get("action"), dict):
        return scripts_of(value["action"], depth + 1)
    command = next((value[key] for key in COMMAND_KEYS if key in value), None)
    args = value.get("args")
    if isinstance(command, str) and isinstance(args, list):
        return [f"{command} {argv_text(args)}"]
    return scripts_of(command if command is not None else args, depth + 1)


def decode_json_string(body: str) -> str:
    for candidate in (body, body.rstrip("\\")):
        try:
            return json.loads(f'"{candidate}"')
        except ValueError:
            continue
    return body


def raw_scripts(arguments: str) -> list[str]:
    """Arguments that are not JSON (cut short, or not JSON at all): the command-shaped fields found
    in the text, or else the text itself."""
    scripts = []
    for match in RAW_FIELD.finditer(arguments):
        double, single, array = match.groups()
        if double is not None:
            scripts.append(decode_json_string(double))
        elif single is not None:
            scripts.append(single)
        elif array is not None:
            scripts.append(argv_text([decode_json_string(s) for s in JSON_STRING.findall(array)]))
    return scripts or [arguments]


def command_scripts(arguments: str) -> list[str]:
    arguments = arguments[:MAX_COMMAND]
    try:
        value = json.loads(arguments)
    except (ValueError, RecursionError):
        return raw_scripts(arguments)
    return scripts_of(value)


# --------------------------------------------------------------------------------------------
# The reactor


def clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= REASON_SEGMENT else text[: REASON_SEGMENT - 1] + "…"


def blocked(rule_name: str, segment: str, reason: str) -> Verdict:
    return Verdict("block", policy=NAME, rule=rule_name, reason=f"`{clip(segment)}` {reason}")


def rm_forms(command: Command) -> list[str]:
    """``rm`` as ``allow`` sees it: ``rm -rf <operand>`` once per operand."""
    return [f"rm -rf {o}" for o in command.operands] or ["rm -rf"]


class DangerousCommands:
    """The reactor: blocks shell tool calls whose command matches a rule of ``RULES`` or the config."""

    name = NAME

    def __init__(self, config: DangerousCommandsConfig | None = None) -> None:
        self.config = config if config is not None else DangerousCommandsConfig()
        self.tools = frozenset(self.config.shell_tools) if self.config.enabled else frozenset()

    def watches(self, tool: str) -> bool:
        return tool in self.tools

    def judge(self, call: Call, context: Context) -> Verdict:
        if not self.watches(call.name):
            return ALLOW
        for script in command_scripts(call.arguments):
            verdict = self.judge_text(script, 0)
            if verdict.action != "allow":
                return verdict
        return ALLOW

    def judge_text(self, text: str, depth: int) -> Verdict:
        text = normalise(text)
        if depth > MAX_DEPTH:
            return blocked(TOO_DEEP[0], text, TOO_DEEP[1])
        lexer = Lexer(text).run()
        if lexer.too_deep:
            return blocked(TOO_DEEP[0], text, TOO_DEEP[1])
        return self.judge_tokens(lexer.tokens, lexer.nested, depth)

    def judge_tokens(self, tokens: Sequence[Token], nested: Sequence[Sequence[Token]], depth: int) -> Verdict:
        for rule_name, matches, reason in SCRIPT_RULES:
            if matches(tokens):
                return blocked(rule_name, " ".join(t.text for t in tokens), reason)
        for stages in pipelines(tokens):
            commands, scripts = pipeline_commands(stages)
            pipeline = " | ".join(c.text for c in commands)
            for command in commands:
                verdict = self.judge_command(command, pipeline if command.from_download else command.text)
                if verdict.action != "allow":
                    return verdict
            for script in scripts:
                verdict = self.judge_text(script, depth + 1)
                if verdict.action != "allow":
                    return verdict
        for inner in nested:
            verdict = self.judge_tokens(inner, (), depth + 1)
            if verdict.action != "allow":
                return verdict
        return ALLOW

    def judge_command(self, command: Command, segment: str) -> Verdict:
        """``segment`` is what the reason quotes: the command, or its pipeline when fed by one."""
        if self.exempt(command):
            return ALLOW
        for candidate in rules_for(command.program):
            if candidate.matches(command):
                return blocked(candidate.name, segment, candidate.reason)
        for extra in self.config.extra_rules:
            if extra.regex.search(command.text):
                reason = f"would run a command that the configured rule {extra.name!r} forbids."
                return blocked(extra.name, segment, reason)
        return ALLOW

    def exempt(self, command: Command) -> bool:
        """Does ``allow`` exempt every form of this command?"""
        if not self.config.allow:
            return False
        if command.program != "rm":
            return any(p.search(command.text) for p in self.config.allow)
        if any(".." in o.split("/") for o in command.operands):
            return False
        return all(any(p.search(form) for p in self.config.allow) for form in rm_forms(command))
