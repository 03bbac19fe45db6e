"""Line-level reading of rationale Markdown: step headings, final headings, code fences.

The renderer writes one canonical form (`### Step 1: title`, a ```sql fence,
`### Final answer`); the lexer also recognises what models write instead
(`## Step 1.`, `**Step 1:** title`, `Step 1 - title`, `### 1. title`, `**Final SQL**`,
``` fences without a language, a closing fence glued to the last SQL line).
Prose lines that would read as one of these are escaped by the renderer with a
leading backslash, so explanations can say anything and still round-trip.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_NUMBER_WORDS = {
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
}
_NUMBER = r"(?P<number>\d+|(?:" + "|".join(_NUMBER_WORDS) + r")\b)"
_SEP = r"[:.)\-\u2013\u2014]"

# `### Step 1: Title`, `## Step 2`, `#### step 3 - title ###`, `### 1. Title`
_MD_STEP = re.compile(
    rf"^ {{0,3}}#{{1,6}}\s*(?:step\s*{_NUMBER}|(?P<bare>\d+)\s*[.)])\s*{_SEP}?\s*(?P<title>.*?)"
    r"(?:\s+#+)?\s*$",
    re.IGNORECASE,
)
# `**Step 1:** Title`, `**Step 1: Title**`, `**Step 1.**`
_BOLD_STEP = re.compile(
    rf"^\s*\*\*\s*step\s*{_NUMBER}\s*{_SEP}?\s*(?P<inner>.*?)\*\*\s*{_SEP}?\s*(?P<title>.*?)\s*$",
    re.IGNORECASE,
)
# `Step 1 - Title`, `Step 2: Title` (punctuation required: plain prose may start with "Step")
_PLAIN_STEP = re.compile(rf"^\s*step\s*{_NUMBER}\s*{_SEP}\s*(?P<title>.*?)\s*$", re.IGNORECASE)

_FINAL_WORDS = r"(?:final\b[^\n]*|answer\b[^\n]*)"
_MD_FINAL = re.compile(rf"^ {{0,3}}#{{1,6}}\s*{_FINAL_WORDS}$", re.IGNORECASE)
_BOLD_FINAL = re.compile(rf"^\s*\*\*\s*{_FINAL_WORDS}$", re.IGNORECASE)
# `Final answer:` / `Final SQL: SELECT ...` (the SQL, if any, follows on the same line)
_PLAIN_FINAL = re.compile(
    r"^\s*final\s+(?:answer|sql|query|select)\s*[:\-\u2013\u2014](?P<rest>.*)$", re.IGNORECASE
)

_FENCE_OPEN = re.compile(r"^(?P<indent> {0,3})(?P<ticks>`{3,}|~{3,})\s*(?P<info>[^`\s]*)[^`]*$")


@dataclass(frozen=True)
class StepHeading:
    line: int  # 1-based
    number: int | None
    title: str


@dataclass(frozen=True)
class FinalHeading:
    line: int
    rest: str  # text after a plain `Final SQL:` label on the same line


@dataclass(frozen=True)
class Fence:
    line: int  # line of the opening fence
    info: str  # "sql", "", ...
    content: str
    closed: bool
    marker: str = "```"  # the opening run of backticks or tildes; a closer repeats it


@dataclass(frozen=True)
class ProseLine:
    line: int
    text: str  # unescaped


Block = StepHeading | FinalHeading | Fence | ProseLine


def clean_title(title: str) -> str:
    """A heading title as the lexer reads it back: one line, no emphasis, no closing #s."""
    while True:
        cleaned = re.sub(r"(?:^|\s)#+\s*$", "", " ".join(title.split()))
        cleaned = " ".join(cleaned.strip("*").split())
        if cleaned == title:
            return cleaned
        title = cleaned


def _number(match: re.Match[str]) -> int | None:
    raw = match.groupdict().get("number") or match.groupdict().get("bare")
    if raw is None:
        return None
    return int(raw) if raw.isdigit() else _NUMBER_WORDS[raw.lower()]


def step_heading(text: str, line: int = 0) -> StepHeading | None:
    """The step heading on this line, if it is one."""
    if match := _MD_STEP.match(text):
        return StepHeading(line, _number(match), clean_title(match["title"]))
    if match := _BOLD_STEP.match(text):
        title = match["inner"] or match["title"]
        return StepHeading(line, _number(match), clean_title(title))
    if match := _PLAIN_STEP.match(text):
        return StepHeading(line, _number(match), clean_title(match["title"]))
    return None


def final_heading(text: str, line: int = 0) -> FinalHeading | None:
    """The final-answer heading on this line, if it is one."""
    if _MD_FINAL.match(text) or _BOLD_FINAL.match(text):
        return FinalHeading(line, "")
    if match := _PLAIN_FINAL.match(text):
        return FinalHeading(line, match["rest"].strip())
    return None


def is_special_line(text: str) -> bool:
    """Whether a prose line would be read as structure (and so must be escaped)."""
    return (
        text.startswith("\\")
        or _FENCE_OPEN.match(text) is not None
        or step_heading(text) is not None
        or final_heading(text) is not None
    )


def escape_prose(text: str) -> str:
    """Prefix every structural-looking line with a backslash (see `unescape_line`)."""
    return "\n".join("\\" + line if is_special_line(line) else line for line in text.split("\n"))


def unescape_line(text: str) -> str:
    return text[1:] if text.startswith("\\") else text


def fence_for(content: str) -> str:
    """A backtick fence longer than any backtick run in `content` (CommonMark rule)."""
    longest = max((len(run) for run in re.findall(r"`+", content)), default=0)
    return "`" * max(3, longest + 1)


def _closes(text: str, ticks: str) -> tuple[bool, str]:
    """Whether `text` closes a fence opened with `ticks`; and SQL before a glued closer."""
    stripped = text.rstrip()
    if re.fullmatch(rf" {{0,3}}{re.escape(ticks[0])}{{{len(ticks)},}}", stripped):
        return True, ""
    # A closer glued to the last code line: `SELECT 1;```. The renderer's fences are
    # longer than any backtick run in the code, so rendered text never triggers this.
    run = len(stripped) - len(stripped.rstrip(ticks[0]))
    if run >= len(ticks) and stripped[:-run].strip():
        return True, stripped[:-run]
    return False, ""


def lex(text: str) -> list[Block]:
    """Split rationale text into headings, fences and prose lines, in order."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    blocks: list[Block] = []
    index = 0
    while index < len(lines):
        line, number = lines[index], index + 1
        opening = _FENCE_OPEN.match(line)
        if opening:
            ticks, indent = opening["ticks"], len(opening["indent"])
            body: list[str] = []
            closed = False
            index += 1
            while index < len(lines):
                done, tail = _closes(lines[index], ticks)
                if done:
                    if tail:
                        body.append(tail)
                    closed = True
                    break
                code = lines[index]
                body.append(code[indent:] if code[:indent].isspace() else code)
                index += 1
            blocks.append(Fence(number, opening["info"].lower(), "\n".join(body), closed, ticks))
            index += 1
            continue
        heading: Block | None = step_heading(line, number) or final_heading(line, number)
        blocks.append(heading or ProseLine(number, unescape_line(line)))
        index += 1
    return blocks
