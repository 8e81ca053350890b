"""Every fact the code cites lives in the repository: each ``docs/...md``
(``#anchor``) named in a tracked file exists, and nothing cites the
developers' reference documents outside the repository."""
import os
import re
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Paths in other projects' repositories that our files name as sources.
UPSTREAM = {
    'docs/modelzoo/isnet/README.md',  # sssegmentation's ISNet table
    'docs/ModelZoo.md',  # sssegmentation's
}
CITATION = re.compile(r'docs/[\w./-]+\.md(#[\w-]+)?')


def tracked_text_files():
    try:
        names = subprocess.run(['git', 'ls-files'], cwd=ROOT, check=True,
                               capture_output=True, text=True).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        pytest.skip('not a git checkout')
    for name in names:
        path = os.path.join(ROOT, name)
        if (name.startswith('docs/') or name == 'tests/test_docs.py'
                or not os.path.isfile(path)):
            continue
        try:
            with open(path, encoding='utf-8') as f:
                yield name, f.read()
        except UnicodeDecodeError:  # binary
            continue


def github_anchors(path):
    """The anchors GitHub makes of a Markdown file's headings."""
    anchors = set()
    with open(path, encoding='utf-8') as f:
        for line in f:
            match = re.match(r'#{1,6}\s+(.+)', line)
            if match:
                text = re.sub(r'[^\w\- ]', '', match.group(1).strip().lower())
                anchors.add(text.replace(' ', '-'))
    return anchors


def test_github_anchor_rule_hand_checked(tmp_path):
    page = tmp_path / 'page.md'
    page.write_text('# Top\n## GCNet (mmseg form)\n### ssseg ISNet: the 6.5 test\n')
    assert github_anchors(str(page)) == {
        'top', 'gcnet-mmseg-form', 'ssseg-isnet-the-65-test'}


def test_every_docs_citation_resolves():
    broken = []
    for name, text in tracked_text_files():
        for match in CITATION.finditer(text):
            target = match.group(0).split('#')[0]
            if target in UPSTREAM:
                continue
            path = os.path.join(ROOT, target)
            if not os.path.isfile(path):
                broken.append('{}: {} (no such file)'.format(name, match.group(0)))
            elif match.group(1) and match.group(1)[1:] not in github_anchors(path):
                broken.append('{}: {} (no such heading)'.format(
                    name, match.group(0)))
    assert not broken, '\n'.join(broken)


@pytest.mark.parametrize('outside', ['MODELS_SPEC', 'USERS_AND_STYLE',
                                     'shared/reference'])
def test_nothing_cites_documents_outside_the_repository(outside):
    citing = [name for name, text in tracked_text_files() if outside in text]
    assert not citing, citing
