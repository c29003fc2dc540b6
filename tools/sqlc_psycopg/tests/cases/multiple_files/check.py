from typing import assert_type

from case_multiple_files import models, team_members, teams

from tests.harness import AsyncHarness, Harness


def check(h: Harness) -> None:
    h.check(lambda: teams.add_team(h.conn, id=1, name="red"), teams.ADD_TEAM, (1, "red"),
            fetch="none", mutates=True)
    for who in ("b", "a"):
        h.check(lambda: team_members.add_member(h.conn, team_id=1, name=who),
                team_members.ADD_MEMBER, (1, who), fetch="none", mutates=True)
    all_teams = h.check(lambda: teams.teams(h.conn), teams.TEAMS)
    assert_type(all_teams, list[models.Team])
    names = h.check(lambda: team_members.members_of(h.conn, team_id=1), team_members.MEMBERS_OF,
                    (1,), value=str)
    assert names == ["a", "b"]


async def check_async(h: AsyncHarness) -> None:
    names = await h.check(
        lambda: team_members.members_of_async(h.conn, team_id=1), team_members.MEMBERS_OF, (1,),
        value=str,
    )
    assert len(names) == 2
