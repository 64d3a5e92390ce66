"""Commands about single students: `restore` (bring back removed students) and `student temp ...`
(temporary students created before the SIS has them, later linked to the permanent record).
"""

from __future__ import annotations

import argparse

from rosterflow.cli.output import AddCommand, print_result, table_text
from rosterflow.cli.approvers import approver_secret, refused


def cmd_restore(args: argparse.Namespace) -> int:
    from tasks.approvers import ApproverError
    from tasks.restore import restore_students

    secret = approver_secret(args.by)
    try:
        with args.wh.write() as con:
            result = restore_students(con, args.by, args.student or None, args.batch, secret=secret)
    except ApproverError as error:
        return refused(error)
    lines = [f"Restored {len(result['restored'])} student(s)."]
    lines += [f"  not restored: student {r['student_key']}: {r['reason']}" for r in result["refused"]]
    print_result(result, args.json, "\n".join(lines))
    return 0 if not result["refused"] else 2


def cmd_temp_add(args: argparse.Namespace) -> int:
    from tasks import temporary

    with args.wh.write() as con:
        student = temporary.create_temporary_student(
            con, args.first, args.last, ssid=args.ssid, other_id=args.other_id, date_of_birth=args.dob,
            school=args.school, grade=args.grade, actor=args.actor)
    print_result(student, args.json,
                 f"Temporary student {student['student_key']}: {student['first_name']} {student['last_name']}\n"
                 f"  login {student['login_name']}  password {student['password']}  (shown once: give it to the "
                 f"teacher)")
    return 0


def cmd_temp_list(args: argparse.Namespace) -> int:
    from tasks import temporary

    with args.wh.read() as con:
        frame = temporary.list_temporary_students(con, unlinked_only=not args.all)
    print_result(frame.to_dicts(), args.json, table_text(frame) if frame.height else "No temporary students.")
    return 0


def cmd_temp_find(args: argparse.Namespace) -> int:
    from tasks import temporary

    with args.wh.read() as con:
        frame = temporary.find_temporary_candidates(con, name=args.name, ssid=args.ssid, other_id=args.other_id)
    print_result(frame.to_dicts(), args.json, table_text(frame) if frame.height else "No student found.")
    return 0


def cmd_temp_link(args: argparse.Namespace) -> int:
    from tasks import temporary

    with args.wh.write() as con:
        result = temporary.link_temporary_student(con, args.temporary_key, args.student_key, args.actor)
    print_result(result, args.json,
                 f"Temporary student {args.temporary_key} linked to student {args.student_key}: "
                 f"{len(result['enrollments_moved'])} enrollment(s) moved, {len(result['already_enrolled'])} "
                 f"already there")
    return 0


def cmd_temp_delete(args: argparse.Namespace) -> int:
    from tasks import temporary

    with args.wh.write() as con:
        result = temporary.delete_temporary_student(con, args.key, args.actor)
    print_result(result, args.json, f"Temporary student {args.key} deleted.")
    return 0


def add_commands(sub: argparse._SubParsersAction, command: AddCommand) -> None:
    """Add `restore` and `student temp ...` to the sub-parsers ``sub``."""
    p = command("restore", cmd_restore, "bring back removed students (registered approvers only)")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--student", type=int, action="append", help="a removed student's key (repeatable)")
    target.add_argument("--batch", type=int, help="restore everyone this batch removed")
    p.add_argument("--by", required=True, help="the registered approver restoring; their secret is read from "
                   "ROSTERFLOW_APPROVER_SECRET or asked for")

    student = sub.add_parser("student", help="students").add_subparsers(dest="student_command", required=True)
    temp = student.add_parser("temp", help="temporary students (before the SIS has them)").add_subparsers(
        dest="temp_command", required=True)
    p = command("add", cmd_temp_add, "create a temporary student (prints its login and password)", temp)
    p.add_argument("--first", required=True, help="first name")
    p.add_argument("--last", required=True, help="last name")
    p.add_argument("--ssid")
    p.add_argument("--other-id")
    p.add_argument("--dob", help="date of birth, YYYY-MM-DD")
    p.add_argument("--school")
    p.add_argument("--grade")
    command("list", cmd_temp_list, "list unlinked temporary students", temp).add_argument(
        "--all", action="store_true", help="include those already linked")
    p = command("find", cmd_temp_find, "find students by name (any case and accents), SSID or other ID", temp)
    p.add_argument("--name")
    p.add_argument("--ssid")
    p.add_argument("--other-id")
    p = command("link", cmd_temp_link, "link a temporary student to a permanent one (enrollments move)", temp)
    p.add_argument("temporary_key", type=int)
    p.add_argument("student_key", type=int)
    command("delete", cmd_temp_delete, "delete a temporary student that was never used", temp).add_argument(
        "key", type=int)
