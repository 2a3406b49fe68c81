"""The words of incidents: public text for shop owners, evidence for on-call.

Public text (titles, update bodies) names the component, what users feel and the markets as
country names; never rule names, expressions, values, deploy ids or instances. Evidence
(`error_ratio (1) >= 0.9; seen from 1 of 1 instances`, the deploy and its flag) goes with
every update for on-call only.
"""

from __future__ import annotations

import string
from collections.abc import Iterable, Mapping

from detector.engine.series import Series
from detector.model import PUBLIC_FIELDS, Deploy, IncidentStatus, Rule
from detector.timeutil import format_duration, format_time

# The EU markets plus GB and US, in English; unknown codes are shown as they are.
COUNTRIES = {
    "AT": "Austria", "BE": "Belgium", "BG": "Bulgaria", "HR": "Croatia", "CY": "Cyprus",
    "CZ": "Czechia", "DK": "Denmark", "EE": "Estonia", "FI": "Finland", "FR": "France",
    "DE": "Germany", "GR": "Greece", "HU": "Hungary", "IE": "Ireland", "IT": "Italy",
    "LV": "Latvia", "LT": "Lithuania", "LU": "Luxembourg", "MT": "Malta",
    "NL": "the Netherlands", "PL": "Poland", "PT": "Portugal", "RO": "Romania",
    "SK": "Slovakia", "SI": "Slovenia", "ES": "Spain", "SE": "Sweden",
    "GB": "the United Kingdom", "US": "the United States",
}  # fmt: skip

# What users feel, by the probe kind a rule watches.
ACTIVITIES = {
    "label_creation": "creating labels with {name}",
    "order_import": "importing orders from {name}",
    "tracking": "getting tracking updates from {name}",
    "http": "using {name}",
}
DEFAULT_PUBLIC = {
    IncidentStatus.INVESTIGATING: "We are investigating problems {activity}.",
    IncidentStatus.IDENTIFIED: (
        "A recent change on our side caused problems {activity}. We are working on a fix."
    ),
    IncidentStatus.MONITORING: "{Activity} works again. We are monitoring the results.",
    IncidentStatus.RESOLVED: "This incident has been resolved: {activity} works normally again.",
}


# One sample per public field: a template accepted by check_template cannot fail later.
_SAMPLE = {"component_name": "DHL", "markets": " (DE, NL)"}
_SAMPLE |= {"market_list": "Germany and the Netherlands"}


def check_template(text: str) -> None:
    """Only the public fields, plainly: a bad title fails `rules check`, not at 3am. Raises
    ValueError with one line."""
    for _, name, spec, conversion in string.Formatter().parse(text):
        if name is None:
            continue
        if name not in PUBLIC_FIELDS:
            if not name or not name.isidentifier():
                raise ValueError(
                    f"'{{{name}}}': only plain field names are allowed, e.g. {{component_name}}"
                )
            known = ", ".join(PUBLIC_FIELDS)
            raise ValueError(f"unknown field '{{{name}}}' (public text may use: {known})")
        if conversion is not None or "{" in (spec or ""):
            raise ValueError(f"field '{{{name}}}': conversions and nested fields are not allowed")
        try:
            format(_SAMPLE[name], spec or "")
        except ValueError as error:
            raise ValueError(f"field '{{{name}:{spec}}}': {error}") from None


def country(code: str) -> str:
    return COUNTRIES.get(code, code)


def market_list(markets: Iterable[str]) -> str:
    """`Germany`, `Germany and the Netherlands`, `Austria, Germany and France`."""
    names = [country(code) for code in markets]
    if len(names) <= 1:
        return names[0] if names else ""
    return f"{', '.join(names[:-1])} and {names[-1]}"


class Texts:
    def __init__(self, component_names: Mapping[str, str]) -> None:
        self.component_names = dict(component_names)

    def component_name(self, component: str) -> str:
        name = self.component_names.get(component)
        return name if name else component.rsplit("/", 1)[-1]

    def public_fields(self, component: str, markets: tuple[str, ...]) -> dict[str, str]:
        """The placeholders public templates may use (rulefile.PUBLIC_FIELDS)."""
        return {
            "component_name": self.component_name(component),
            "markets": f" ({', '.join(markets)})" if markets else "",
            "market_list": market_list(markets),
        }

    def title(self, rule: Rule, component: str, markets: tuple[str, ...]) -> str:
        return rule.title.format(**self.public_fields(component, markets))

    def body(
        self,
        rule: Rule,
        status: IncidentStatus,
        component: str,
        markets: tuple[str, ...],
    ) -> str:
        """The public sentence for `status`: the rule's own (`public_text`, or `message` for
        investigating), else the default one."""
        fields = self.public_fields(component, markets)
        template = dict(rule.public_text).get(str(status))
        if template is None and status is IncidentStatus.INVESTIGATING and rule.message:
            template = rule.message
        if template is not None:
            return template.format(**fields)
        activity = ACTIVITIES.get(rule.match.kind or "", "using {name}").format(
            name=fields["component_name"]
        )
        if markets:
            activity += f" in {fields['market_list']}"
        sentence = DEFAULT_PUBLIC[status]
        return sentence.format(activity=activity, Activity=activity[:1].upper() + activity[1:])

    # ------------------------------------------------------------------ evidence

    @staticmethod
    def explain(rule: Rule, series: Series) -> str:
        """Why the last judgement came out as it did, with the values seen."""
        if series.short_count is not None:
            return (
                f"no data: {series.short_count} results in the last"
                f" {format_duration(rule.window)} (min_results {rule.min_results})"
            )
        if series.values is None:
            return "no evaluation since restart"
        if series.matched is not None:
            why = series.matched.explain(series.values)
        else:
            checked = "; ".join(impact.when.explain(series.values) for impact in rule.impact)
            why = f"no impact condition holds (false: {checked})"
        if series.agree is not None and series.failing:
            why += f"; seen from {series.agree[0]} of {series.agree[1]} instances"
        return why

    def evidence(self, rule: Rule, series: Iterable[Series]) -> str:
        """Each series' explanation, prefixed by its split values when the rule splits."""
        parts = []
        for item in sorted(series, key=lambda s: s.split):
            why = self.explain(rule, item)
            parts.append(f"{'/'.join(item.split) or '-'}: {why}" if rule.split_by else why)
        return " | ".join(parts)

    @staticmethod
    def deploy_note(deploy: Deploy, failing_since: float, flagged_at: float | None) -> str:
        lag = failing_since - deploy.at
        when = f"{format_duration(lag)} after" if lag >= 0 else f"{format_duration(-lag)} before"
        note = (
            f"; cause: deploy {deploy.id} ({deploy.service} {deploy.version},"
            f" {format_time(deploy.at)}), the failure started {when} it"
        )
        if flagged_at is not None:
            note += f"; deploy {deploy.id} flagged bad at {format_time(flagged_at)}"
        return note
