"""Commands that set up the warehouse and its reference data: `init`, `school`, `course`, `subscription`."""

from __future__ import annotations

import argparse

from rosterflow.cli.output import AddCommand, count_arg, print_result, show_query


def cmd_init(args: argparse.Namespace) -> int:
    from tasks.messages import reconcile_plain_passwords

    with args.wh.write() as con:
        # Batches committed before messages were read back may still hold plain passwords.
        passwords = reconcile_plain_passwords(con)
    lines = [f"Warehouse ready at {args.warehouse}"]
    lines += [f"Batch {b['batch_id']}: {b['passwords']} plain password(s) purged (every one read back from its "
              f"messages)" for b in passwords["purged"]]
    lines += [f"Batch {b['batch_id']} still holds {b['passwords']} plain password(s): {b['reason']}. "
              f"Run `rosterflow messages build {b['batch_id']}`" for b in passwords["waiting"]]
    print_result({"warehouse": str(args.warehouse), "plain_passwords": passwords}, args.json, "\n".join(lines))
    return 0


def cmd_school_add(args: argparse.Namespace) -> int:
    from warehouse import catalog

    with args.wh.write() as con:
        added = catalog.add_schools(con, args.names, args.actor)
    print_result({"added": added}, args.json, f"{added} school(s) added")
    return 0


def cmd_school_list(args: argparse.Namespace) -> int:
    return show_query(args, "SELECT school_id, name FROM schools ORDER BY name", "No schools yet.")


def cmd_school_requests(args: argparse.Namespace) -> int:
    return show_query(args, "SELECT name, first_batch, rows_waiting, requested_at, status FROM school_requests"
                      " ORDER BY requested_at", "No school requests.")


def cmd_course_add(args: argparse.Namespace) -> int:
    from warehouse import catalog

    courses = {}
    for item in args.courses:
        code, _, name = item.partition("=")
        courses[code] = name or code
    with args.wh.write() as con:
        added = catalog.add_courses(con, courses, args.actor)
    print_result({"added": added}, args.json, f"{added} course(s) added")
    return 0


def cmd_course_list(args: argparse.Namespace) -> int:
    return show_query(args, "SELECT course_code, name FROM courses ORDER BY course_code", "No courses yet.")


def cmd_subscription_set(args: argparse.Namespace) -> int:
    from warehouse import catalog

    with args.wh.write() as con:
        catalog.set_subscriptions(con, args.type, args.available, args.actor, args.school)
    print_result({"type": args.type, "available": args.available, "school": args.school}, args.json,
                 f"{args.type}: {args.available} available" + (f" at {args.school}" if args.school else " (district)"))
    return 0


def cmd_subscription_list(args: argparse.Namespace) -> int:
    return show_query(args, "SELECT s.subscription_type, coalesce(sc.name, '(district)') AS school, s.available"
                      " FROM subscriptions s LEFT JOIN schools sc USING (school_id) ORDER BY 1, 2",
                      "No subscriptions yet.")


def add_commands(sub: argparse._SubParsersAction, command: AddCommand) -> None:
    """Add `init`, `school`, `course` and `subscription` to the sub-parsers ``sub``."""
    command("init", cmd_init, "create the warehouse (or upgrade its schema)")
    school = sub.add_parser("school", help="schools").add_subparsers(dest="school_command", required=True)
    command("add", cmd_school_add, "add schools", school).add_argument("names", nargs="+")
    command("list", cmd_school_list, "list schools", school)
    command("requests", cmd_school_requests, "schools named in sheets but not in rosterflow", school)
    course = sub.add_parser("course", help="course catalog").add_subparsers(dest="course_command", required=True)
    command("add", cmd_course_add, "add courses as CODE=Name", course).add_argument("courses", nargs="+")
    command("list", cmd_course_list, "list courses", course)
    subscription = sub.add_parser("subscription", help="subscriptions").add_subparsers(dest="sub_command",
                                                                                      required=True)
    p = command("set", cmd_subscription_set, "set available subscriptions of a type", subscription)
    p.add_argument("type")
    p.add_argument("available", type=count_arg, help="a whole number, 0 or more")
    p.add_argument("--school", help="a school's own pool (default: the district's)")
    command("list", cmd_subscription_list, "list subscriptions", subscription)
