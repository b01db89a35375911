"""Deterministic generator of a realistic portal: managers, clients, leads and deals over the past year.

A ``SeedPlan`` (pure data, from ``random.Random(seed)``) lists every create and move with its moment;
it is then played in time order through the portal's own methods, so stage history is faithful.
"""

from __future__ import annotations

import bisect
import functools
import itertools
import logging
import math
import random
import sys
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from connector.catalog import DEAL, stage_prefix
from connector.emulator import registry
from connector.emulator.state import cyclic_gc_paused

if TYPE_CHECKING:
    from connector.emulator.state import Portal

log = logging.getLogger(__name__)

DAY = 86400.0
YEAR_DAYS = 365

# ---------------------------------------------------------------------------- Russian user data

MALE_NAMES = ("Александр", "Алексей", "Андрей", "Антон", "Артём", "Борис", "Вадим", "Василий", "Виктор",
              "Владимир", "Дмитрий", "Евгений", "Егор", "Иван", "Игорь", "Илья", "Кирилл", "Константин",
              "Максим", "Михаил", "Никита", "Николай", "Олег", "Павел", "Роман", "Сергей", "Станислав",
              "Степан", "Тимур", "Юрий")
FEMALE_NAMES = ("Алина", "Алла", "Анастасия", "Анна", "Валентина", "Валерия", "Вера", "Виктория", "Галина",
                "Дарья", "Евгения", "Екатерина", "Елена", "Жанна", "Ирина", "Ксения", "Лариса", "Любовь",
                "Людмила", "Марина", "Мария", "Наталья", "Нина", "Ольга", "Полина", "Светлана", "София",
                "Татьяна", "Юлия", "Яна")
MALE_PATRONYMICS = ("Александрович", "Алексеевич", "Андреевич", "Викторович", "Владимирович", "Дмитриевич",
                    "Евгеньевич", "Иванович", "Игоревич", "Михайлович", "Николаевич", "Олегович",
                    "Павлович", "Петрович", "Сергеевич", "Юрьевич")
FEMALE_PATRONYMICS = tuple(p[:-2] + "на" for p in MALE_PATRONYMICS)
LAST_NAMES = ("Иванов", "Смирнов", "Кузнецов", "Попов", "Васильев", "Петров", "Соколов", "Михайлов",
              "Новиков", "Фёдоров", "Морозов", "Волков", "Алексеев", "Лебедев", "Семёнов", "Егоров",
              "Павлов", "Козлов", "Степанов", "Николаев", "Орлов", "Андреев", "Макаров", "Никитин",
              "Захаров", "Зайцев", "Соловьёв", "Борисов", "Яковлев", "Григорьев", "Романов", "Воробьёв",
              "Сергеев", "Кузьмин", "Фролов", "Александров", "Дмитриев", "Королёв", "Гусев", "Киселёв",
              "Ильин", "Максимов", "Поляков", "Сорокин", "Виноградов", "Ковалёв", "Белов", "Медведев",
              "Антонов", "Тарасов", "Жуков", "Баранов", "Филиппов", "Комаров", "Давыдов", "Беляев",
              "Герасимов", "Богданов", "Осипов", "Сидоров", "Матвеев", "Титов", "Марков", "Миронов",
              "Крылов", "Куликов", "Карпов", "Власов", "Мельников", "Денисов", "Гаврилов", "Тихонов",
              "Казаков", "Афанасьев", "Данилов", "Савельев", "Тимофеев", "Фомин", "Чернов", "Абрамов",
              "Мартынов", "Ефимов", "Федотов", "Щербаков", "Назаров", "Калинин", "Исаев", "Чернышёв",
              "Быков", "Маслов", "Родионов", "Коновалов", "Лазарев", "Воронин", "Климов", "Филатов",
              "Пономарёв", "Голубев", "Кудрявцев", "Прохоров", "Наумов", "Потапов", "Журавлёв",
              "Овчинников", "Трофимов", "Леонов", "Соболев", "Ермаков", "Колесников", "Гончаров",
              "Емельянов", "Никифоров", "Грачёв", "Котов", "Гришин", "Ефремов", "Архипов", "Громов",
              "Кириллов", "Малышев", "Панов", "Моисеев", "Румянцев", "Акимов", "Кондратьев", "Бирюков",
              "Горбунов", "Анисимов", "Ерёмин", "Тихомиров", "Галкин", "Лукьянов", "Михеев", "Скворцов",
              "Юдин", "Белоусов", "Нестеров", "Симонов", "Прокофьев", "Харитонов", "Князев", "Цветков",
              "Левин", "Митрофанов", "Воронов", "Аксёнов", "Софронов", "Мальцев", "Логинов", "Горшков",
              "Савин", "Краснов", "Майоров", "Демидов", "Елисеев", "Рыбаков", "Сафонов", "Плотников",
              "Демин", "Хохлов", "Жданов", "Рябов", "Мухин", "Калашников", "Веселов", "Заботин",
              "Островский", "Вишневский", "Ковальский", "Белинский", "Рожков", "Лавров", "Зуев",
              "Пестов", "Шубин", "Бондаренко", "Коваленко", "Шевченко", "Ткаченко", "Кравченко")

COMPANY_WORDS = ("Альфа", "Вектор", "СтройМонтаж", "ТехноПром", "Северный ветер", "Гранит", "Меридиан", "Орион",
                 "Спектр", "Лидер", "Прогресс", "Энергия", "Сибирь", "Волга", "Атлант", "Форвард", "Регион",
                 "Стандарт", "Интеграл", "Каскад", "Ладога", "Восход", "Горизонт", "Пульс", "Технология",
                 "Импульс", "Фактор", "Ресурс", "Синтез", "Квант", "Эталон", "Магистраль", "Вертикаль",
                 "Кристалл", "Полюс", "Урал", "Байкал", "Арктика", "Тайга", "Азимут")
COMPANY_SUFFIXES = ("", "", "", "-М", " Плюс", " Групп", "-Сервис", "-Трейд", " Логистик", " Инжиниринг", "-Юг")
COMPANY_FORMS = (("ООО", 70), ("АО", 10), ("ИП", 15), ("ПАО", 5))
PRODUCTS = ("Поставка оборудования", "Внедрение CRM", "Монтаж вентиляции", "Абонентское обслуживание",
            "Разработка сайта", "Поставка расходных материалов", "Ремонт офиса", "Аудит безопасности",
            "Обучение персонала", "Аренда спецтехники", "Настройка телефонии", "Проектирование сетей")
EMAIL_DOMAINS = ("mail.ru", "yandex.ru", "gmail.com", "bk.ru", "inbox.ru", "list.ru", "rambler.ru")
_TRANSLIT = dict(zip("абвгдеёжзийклмнопрстуфхцчшщъыьэюя",
                     ["a", "b", "v", "g", "d", "e", "e", "zh", "z", "i", "y", "k", "l", "m", "n", "o", "p", "r",
                      "s", "t", "u", "f", "kh", "ts", "ch", "sh", "sch", "", "y", "", "e", "yu", "ya"]))

SOURCES = (("WEB", 25), ("CALL", 20), ("ADVERTISING", 12), ("EMAIL", 10), ("RECOMMENDATION", 10),
           ("WEBFORM", 8), ("PARTNER", 5), ("TRADE_SHOW", 4), ("CALLBACK", 4), ("OTHER", 2))
LEAD_TITLES = {"WEB": "Заявка с сайта", "WEBFORM": "Заявка с CRM-формы", "CALL": "Входящий звонок",
               "CALLBACK": "Обратный звонок", "EMAIL": "Письмо на почту", "ADVERTISING": "Заявка с рекламы",
               "RECOMMENDATION": "Клиент по рекомендации", "PARTNER": "Обращение клиента",
               "TRADE_SHOW": "Контакт с выставки", "OTHER": "Обращение"}
CHANNELS = ("Сайт", "Звонок", "Рекомендация", "Выставка", "Реклама", "Другое")
CHANNEL_OF_SOURCE = {"WEB": "Сайт", "WEBFORM": "Сайт", "CALL": "Звонок", "CALLBACK": "Звонок",
                     "RECOMMENDATION": "Рекомендация", "PARTNER": "Рекомендация", "TRADE_SHOW": "Выставка",
                     "ADVERTISING": "Реклама", "EMAIL": "Другое", "OTHER": "Другое"}
DEAL_TYPES = (("SALE", 50), ("COMPLEX", 15), ("GOODS", 15), ("SERVICES", 15), ("SERVICE", 5))

# ---------------------------------------------------------------------------- pipeline profiles

DEAL_PATH = ("NEW", "PREPARATION", "PREPAYMENT_INVOICE", "EXECUTING", "FINAL_INVOICE")
LEAD_PATH = ("NEW", "IN_PROCESS", "PROCESSED")


@dataclass(frozen=True)
class PipelineProfile:
    """How the seeded deals of one pipeline move: chance to advance past each DEAL_PATH stage, mean days there."""

    name: str
    share: float  # of the deals created directly (not from leads)
    advance: tuple[float, ...]
    mean_days: tuple[float, ...]
    skip: float = 0.07  # chance that an advance jumps over one stage
    apology: float = 0.2  # share of failures that end in APOLOGY instead of LOSE
    amount_scale: float = 1.0
    reuse_client: float = 0.3


# the default pipeline's weakest stage is the prepayment invoice (about half the deals stop there)
PIPELINE_PROFILES = (
    PipelineProfile("Общая", 0.70, (0.82, 0.74, 0.46, 0.86, 0.90), (2.0, 4.0, 6.0, 10.0, 5.0)),
    PipelineProfile("Повторные продажи", 0.22, (0.90, 0.85, 0.70, 0.90, 0.93), (1.0, 2.0, 4.0, 7.0, 3.0),
           amount_scale=0.6, reuse_client=0.95),
    PipelineProfile("Тендеры", 0.08, (0.70, 0.55, 0.60, 0.80, 0.85), (5.0, 10.0, 12.0, 20.0, 8.0), skip=0.02,
           apology=0.35, amount_scale=3.5, reuse_client=0.1),
)
LEAD_ADVANCE = (0.86, 0.76, 0.62)  # NEW -> IN_PROCESS -> PROCESSED -> CONVERTED; otherwise JUNK
LEAD_MEAN_DAYS = (0.6, 1.5, 3.0)
LEADS_PER_DEAL = 1.5
CATEGORY_SWITCH = 0.01  # share of direct default-pipeline deals moved to «Повторные продажи» at the start
MANAGERS = 8
PROGRESS_MIN_DEALS = 5000  # seeds this big log a progress line every 10 %


# ---------------------------------------------------------------------------- plan


@dataclass(slots=True)
class Person:
    """A client person: names, gender, phone, e-mail, optional company title."""

    name: str
    last_name: str
    second_name: str
    phone: str
    email: str
    company: str | None


@dataclass(slots=True)
class LeadPlan:
    """One lead: when it appears, its status moves, and the deal it converts into (if any)."""

    index: int
    created: float
    manager: int
    source: str
    person: Person
    amount: int
    moves: list[tuple[float, str]] = field(default_factory=list)
    deal: int | None = None  # index of the DealPlan it converts into


@dataclass(slots=True)
class DealPlan:
    """One deal: pipeline, moves (moment, pipeline index, stage suffix), client and money."""

    index: int
    created: float
    pipeline: int  # index into PIPELINE_PROFILES (and the seeded pipelines)
    manager: int
    source: str
    deal_type: str
    amount: int
    moves: list[tuple[float, int, str]] = field(default_factory=list)
    lead: int | None = None
    person: Person | None = None  # the client of a direct deal (converted deals take the lead's person)
    reuse: float | None = None  # set: pick an existing client by this number in [0, 1) instead


@dataclass
class SeedPlan:
    """Everything the seeder will create, with moments; independent of the portal."""

    start: float
    end: float
    managers: list[tuple[str, str, str, str]]  # (name, last name, second name, gender)
    leads: list[LeadPlan]
    deals: list[DealPlan]


_CUMULATIVE: dict[int, tuple[list[str], list[float]]] = {}


def _weighted(rng: random.Random, pairs: tuple[tuple[str, int], ...]) -> str:
    """A value from (value, weight) pairs."""
    cached = _CUMULATIVE.get(id(pairs))
    if cached is None:
        values = [v for v, _ in pairs]
        cumulative = list(itertools.accumulate(float(w) for _, w in pairs))
        cached = _CUMULATIVE[id(pairs)] = (values, cumulative)
    values, cumulative = cached
    return values[bisect.bisect_right(cumulative, rng.random() * cumulative[-1])]


@functools.lru_cache(maxsize=4096)
def _translit(text: str) -> str:
    return "".join(_TRANSLIT.get(ch, ch) for ch in text.lower())


@functools.lru_cache(maxsize=1024)
def _female(last_name: str) -> str:
    if last_name.endswith("ский"):
        return last_name[:-2] + "ая"
    if last_name.endswith(("ов", "ев", "ёв", "ин", "ын")):
        return last_name + "а"
    return last_name


def _person(rng: random.Random, with_company: float = 0.5) -> Person:
    female = rng.random() < 0.45
    name = rng.choice(FEMALE_NAMES if female else MALE_NAMES)
    last = rng.choice(LAST_NAMES)
    last = _female(last) if female else last
    second = rng.choice(FEMALE_PATRONYMICS if female else MALE_PATRONYMICS)
    phone = f"+79{int(rng.random() * 1e9):09d}"
    email = f"{_translit(name)[0]}.{_translit(last)}{int(rng.random() * 998) + 1}@{rng.choice(EMAIL_DOMAINS)}"
    company = _company(rng, name, last, second) if rng.random() < with_company else None
    return Person(name, last, second, phone, email, company)


def _company(rng: random.Random, name: str, last: str, second: str) -> str:
    form = _weighted(rng, COMPANY_FORMS)
    if form == "ИП":
        return sys.intern(f"ИП {last} {name[0]}.{second[0]}.")  # names recur: one string each
    return sys.intern(f"{form} «{rng.choice(COMPANY_WORDS)}{rng.choice(COMPANY_SUFFIXES)}»")


def _amount(rng: random.Random, scale: float) -> int:
    value = math.exp(rng.gauss(math.log(120_000 * scale), 0.9))
    return max(5_000, int(round(value / 100.0)) * 100)


def _working_moment(rng: random.Random, moment: float, tz_offset: float) -> float:
    """Snap a moment into working hours (Mon-Fri, 9:00-19:00 portal time), moving forward only."""
    local = moment + tz_offset
    day_start = math.floor(local / DAY) * DAY
    seconds = local - day_start
    if seconds < 9 * 3600:
        seconds = 9 * 3600 + rng.random() * 3600
    elif seconds > 19 * 3600:
        day_start += DAY
        seconds = 9 * 3600 + rng.random() * 2 * 3600
    weekday = int((day_start / DAY + 3) % 7)  # 1970-01-01 was a Thursday (3)
    if weekday >= 5:
        day_start += (7 - weekday) * DAY
    return day_start + seconds - tz_offset


def _created_moment(rng: random.Random, start: float, end: float, tz_offset: float) -> float:
    """A creation moment over the year, slightly more in recent months (a growing business)."""
    while True:
        x = rng.random() ** 0.85
        moment = _working_moment(rng, start + x * (end - start), tz_offset)
        if moment < end:
            return moment


def _lead_moves(rng: random.Random, created: float, end: float, tz_offset: float) -> list[tuple[float, str]]:
    moves: list[tuple[float, str]] = []
    moment = created
    for step, advance in enumerate(LEAD_ADVANCE):
        moment = _working_moment(rng, moment + rng.expovariate(1.0 / LEAD_MEAN_DAYS[step]) * DAY, tz_offset)
        if moment >= end:
            break
        if rng.random() < advance:
            target = LEAD_PATH[step + 1] if step + 1 < len(LEAD_PATH) else "CONVERTED"
            moves.append((moment, target))
            if target == "CONVERTED":
                break
        else:
            moves.append((moment, "JUNK"))
            break
    return moves


def _deal_moves(rng: random.Random, plan: DealPlan, end: float, tz_offset: float) -> None:
    pipeline = plan.pipeline
    profile = PIPELINE_PROFILES[pipeline]
    moment = plan.created
    step = 0
    if pipeline == 0 and plan.lead is None and rng.random() < CATEGORY_SWITCH:
        moment = _working_moment(rng, moment + rng.random() * DAY, tz_offset)
        if moment < end:
            pipeline, profile = 1, PIPELINE_PROFILES[1]
            plan.moves.append((moment, pipeline, "NEW"))
    while True:
        moment = _working_moment(rng, moment + rng.expovariate(1.0 / profile.mean_days[step]) * DAY, tz_offset)
        if moment >= end:
            return
        if rng.random() >= profile.advance[step]:
            plan.moves.append((moment, pipeline, "APOLOGY" if rng.random() < profile.apology else "LOSE"))
            return
        step += 1
        if step < len(DEAL_PATH) - 1 and rng.random() < profile.skip:
            step += 1
        if step >= len(DEAL_PATH):
            plan.moves.append((moment, pipeline, "WON"))
            return
        plan.moves.append((moment, pipeline, DEAL_PATH[step]))


def make_plan(deals: int, seed: int, end: float, tz_offset: float = 3 * 3600) -> SeedPlan:
    """The whole portal history as data: about ``deals`` deals (exactly, unless leads convert more)."""
    rng = random.Random(seed)
    start = end - YEAR_DAYS * DAY
    managers = []
    for _ in range(MANAGERS):
        person = _person(rng, with_company=0.0)
        gender = "F" if person.second_name.endswith("на") else "M"
        managers.append((person.name, person.last_name, person.second_name, gender))
    manager_weights = list(itertools.accumulate(rng.uniform(0.6, 1.6) for _ in range(MANAGERS)))

    def pick_manager() -> int:
        return bisect.bisect_right(manager_weights, rng.random() * manager_weights[-1])

    leads: list[LeadPlan] = []
    deal_plans: list[DealPlan] = []
    for index in range(int(round(deals * LEADS_PER_DEAL))):
        created = _created_moment(rng, start, end, tz_offset)
        source = _weighted(rng, SOURCES)
        person = _person(rng, with_company=0.4)
        lead = LeadPlan(index, created, pick_manager(), source, person, _amount(rng, 1.0))
        lead.moves = _lead_moves(rng, created, end, tz_offset)
        leads.append(lead)
        if lead.moves and lead.moves[-1][1] == "CONVERTED" and len(deal_plans) < deals:
            converted_at = lead.moves[-1][0]
            deal_created = converted_at + 60 + rng.random() * 600
            if deal_created < end:
                deal = DealPlan(len(deal_plans), deal_created, 0, lead.manager, source,
                                _weighted(rng, DEAL_TYPES), lead.amount, lead=index)
                lead.deal = deal.index
                deal_plans.append(deal)
    shares = list(itertools.accumulate(f.share for f in PIPELINE_PROFILES))
    while len(deal_plans) < deals:
        pipeline = bisect.bisect_right(shares, rng.random() * shares[-1])
        profile = PIPELINE_PROFILES[pipeline]
        deal = DealPlan(len(deal_plans), _created_moment(rng, start, end, tz_offset), pipeline,
                        pick_manager(), _weighted(rng, SOURCES), _weighted(rng, DEAL_TYPES),
                        _amount(rng, profile.amount_scale))
        deal.person = _person(rng, with_company=0.6)  # also used when there is no client to reuse yet
        if rng.random() < profile.reuse_client:
            deal.reuse = rng.random()
        deal_plans.append(deal)
    for deal in deal_plans:
        _deal_moves(rng, deal, end, tz_offset)
    return SeedPlan(start, end, managers, leads, deal_plans)


# ---------------------------------------------------------------------------- playing the plan


class _Clock:
    """A settable clock the portal reads while the plan is played."""

    def __init__(self, moment: float):
        self.moment = moment

    def __call__(self) -> float:
        return self.moment


def _day_start(portal: "Portal") -> float:
    """Start of the portal's current day: the seeded year ends there, so one day gives one state."""
    now = portal.now()
    return now.replace(hour=0, minute=0, second=0).timestamp()


def _tz_offset(portal: "Portal") -> float:
    offset = portal.tz.utcoffset(None)
    return offset.total_seconds() if offset is not None else 0.0


class _Player:
    """Plays a SeedPlan through registry.invoke, keeping plan index -> portal id maps."""

    def __init__(self, portal: "Portal", plan: SeedPlan):
        self.portal = portal
        self.plan = plan
        self.clock = _Clock(plan.start)
        self.manager_ids: list[int] = []
        self.category_ids: list[int] = [0]
        self.stage_prefix: list[str] = [""]
        self.lead_ids: dict[int, int] = {}
        self.deal_ids: dict[int, int] = {}
        self.clients: list[tuple[int, int | None]] = []  # (contact id, company id) in creation order
        self.channel_ids: dict[str, Any] = {}
        self.channel_field = "UF_CRM_CHANNEL"
        self.contract_field = "UF_CRM_CONTRACT"
        self.contracts = 0
        self.deal_pipeline: dict[int, int] = {}  # deals moved to another pipeline
        self.with_contract: set[int] = set()

    def call(self, method: str, params: dict[str, Any], user: int = 1) -> Any:
        return registry.invoke(self.portal, method, params, user_id=user)

    # ------------------------------------------------------------ set-up at the start of the year

    def set_up(self) -> None:
        self._users()
        for profile in PIPELINE_PROFILES[1:]:
            reply = self.call("crm.category.add", {"entityTypeId": DEAL, "fields": {"name": profile.name,
                                                                                 "sort": 100 * len(self.category_ids)}})
            category_id = reply["category"]["id"]
            self.category_ids.append(category_id)
            self.stage_prefix.append(stage_prefix(category_id))
        self._userfields()

    def _users(self) -> None:
        """Managers as employees of the sales department, registered before the seeded year."""
        from connector.emulator.methods import users

        self.clock.moment = self.plan.start - 60 * DAY
        for name, last, second, gender in self.plan.managers:
            row = users.new_user(self.portal, name=name, last_name=last, second_name=second, gender=gender,
                                 email=f"{_translit(name)[0]}.{_translit(last)}@example.ru",
                                 position="Менеджер по продажам")
            self.manager_ids.append(int(row["ID"]))
        self.clock.moment = self.plan.start - 30 * DAY

    def _userfields(self) -> None:
        self.call("crm.deal.userfield.add", {"fields": {
            "FIELD_NAME": "CHANNEL", "USER_TYPE_ID": "enumeration", "XML_ID": "CHANNEL", "SORT": 100,
            "MULTIPLE": "N", "MANDATORY": "N", "SHOW_FILTER": "Y", "EDIT_FORM_LABEL": "Канал",
            "LIST_COLUMN_LABEL": "Канал", "LIST_FILTER_LABEL": "Канал",
            "LIST": [{"VALUE": value, "SORT": (i + 1) * 10, "DEF": "N"} for i, value in enumerate(CHANNELS)],
        }})
        self.call("crm.deal.userfield.add", {"fields": {
            "FIELD_NAME": "CONTRACT", "USER_TYPE_ID": "string", "XML_ID": "CONTRACT", "SORT": 110,
            "MULTIPLE": "N", "MANDATORY": "N", "SHOW_FILTER": "Y", "EDIT_FORM_LABEL": "Номер договора",
            "LIST_COLUMN_LABEL": "Номер договора", "LIST_FILTER_LABEL": "Номер договора",
        }})
        fields = self.call("crm.deal.userfield.list", {"filter": {"FIELD_NAME": self.channel_field}})
        options = fields[0].get("LIST") or [] if fields else []
        self.channel_ids = {option["VALUE"]: option["ID"] for option in options}

    # ------------------------------------------------------------ timeline

    def events(self) -> tuple[int, Iterator[tuple[float, int, str, int, Any]]]:
        """The number of creates and moves, and all of them as (moment, order, kind, plan index, argument)
        sorted by moment (ties in plan order).

        Kept as flat arrays plus one sorted permutation rather than a list of tuples: a
        100,000-deal plan has ~900,000 events, and they live as long as the portal grows.
        """
        leads, deals = self.plan.leads, self.plan.deals
        moments, kinds, owners, steps = array("d"), array("b"), array("q"), array("q")
        for kind, plans in ((0, leads), (2, deals)):
            for plan in plans:
                moments.append(plan.created)
                kinds.append(kind)
                owners.append(plan.index)
                steps.append(-1)
                for step, move in enumerate(plan.moves):
                    moments.append(move[0])
                    kinds.append(kind + 1)
                    owners.append(plan.index)
                    steps.append(step)
        order = array("q", sorted(range(len(moments)), key=moments.__getitem__))  # stable: ties keep plan order

        def timeline() -> Iterator[tuple[float, int, str, int, Any]]:
            for position in order:
                kind, owner = kinds[position], owners[position]
                if kind == 0:
                    yield moments[position], position, "lead", owner, None
                elif kind == 1:
                    yield moments[position], position, "lead_move", owner, leads[owner].moves[steps[position]][1]
                elif kind == 2:
                    yield moments[position], position, "deal", owner, None
                else:
                    moment, pipeline, stage = deals[owner].moves[steps[position]]
                    yield moment, position, "deal_move", owner, (pipeline, stage)

        return len(order), timeline()

    def play(self) -> None:
        total, events = self.events()
        mark = 1
        loud = len(self.plan.deals) >= PROGRESS_MIN_DEALS
        handlers = {"lead": self._lead, "lead_move": self._lead_move, "deal": self._deal,
                    "deal_move": self._deal_move}
        for number, (moment, _, kind, index, argument) in enumerate(events, start=1):
            self.clock.moment = moment
            handlers[kind](index, argument)
            if loud and number * 10 >= mark * total:
                log.info("seed: %d%% (%d of %d operations)", 10 * mark, number, total)
                mark += 1

    # ------------------------------------------------------------ operations

    def _lead(self, index: int, _: Any) -> None:
        lead = self.plan.leads[index]
        person = lead.person
        fields: dict[str, Any] = {
            "TITLE": f"{LEAD_TITLES[lead.source]}: {person.name} {person.last_name}",
            "NAME": person.name, "LAST_NAME": person.last_name, "SECOND_NAME": person.second_name,
            "STATUS_ID": "NEW", "SOURCE_ID": lead.source, "ASSIGNED_BY_ID": self.manager_ids[lead.manager],
            "CURRENCY_ID": "RUB", "OPPORTUNITY": lead.amount, "OPENED": "Y",
            "PHONE": [{"VALUE": person.phone, "VALUE_TYPE": "WORK"}],
            "EMAIL": [{"VALUE": person.email, "VALUE_TYPE": "WORK"}],
        }
        if person.company:
            fields["COMPANY_TITLE"] = person.company
        self.lead_ids[index] = self.call("crm.lead.add", {"fields": fields}, self.manager_ids[lead.manager])

    def _lead_move(self, index: int, status: str) -> None:
        lead = self.plan.leads[index]
        self.call("crm.lead.update", {"id": self.lead_ids[index], "fields": {"STATUS_ID": status}},
                  self.manager_ids[lead.manager])

    def _new_client(self, person: Person, manager: int, source: str) -> tuple[int, int | None]:
        company_id = None
        if person.company:
            company_id = self.call("crm.company.add", {"fields": {
                "TITLE": person.company, "COMPANY_TYPE": "CUSTOMER", "ASSIGNED_BY_ID": manager,
                "PHONE": [{"VALUE": person.phone, "VALUE_TYPE": "WORK"}],
                "EMAIL": [{"VALUE": person.email, "VALUE_TYPE": "WORK"}], "OPENED": "Y",
            }}, manager)
        contact_fields: dict[str, Any] = {
            "NAME": person.name, "LAST_NAME": person.last_name, "SECOND_NAME": person.second_name,
            "TYPE_ID": "CLIENT", "SOURCE_ID": source, "ASSIGNED_BY_ID": manager, "OPENED": "Y",
            "PHONE": [{"VALUE": person.phone, "VALUE_TYPE": "MOBILE"}],
            "EMAIL": [{"VALUE": person.email, "VALUE_TYPE": "WORK"}],
        }
        if company_id is not None:
            contact_fields["COMPANY_ID"] = company_id
        contact_id = self.call("crm.contact.add", {"fields": contact_fields}, manager)
        self.clients.append((contact_id, company_id))
        return contact_id, company_id

    def _deal(self, index: int, _: Any) -> None:
        deal = self.plan.deals[index]
        manager = self.manager_ids[deal.manager]
        if deal.lead is not None:
            contact_id, company_id = self._new_client(self.plan.leads[deal.lead].person, manager, deal.source)
        elif deal.reuse is None or not self.clients:
            contact_id, company_id = self._new_client(deal.person, manager, deal.source)
        else:
            contact_id, company_id = self.clients[int(deal.reuse * len(self.clients))]
        client = self.plan.leads[deal.lead].person if deal.lead is not None else deal.person
        client_name = client.company or f"{client.name} {client.last_name}"
        fields: dict[str, Any] = {
            "TITLE": f"{PRODUCTS[index % len(PRODUCTS)]} — {client_name}",
            "CATEGORY_ID": self.category_ids[deal.pipeline],
            "STAGE_ID": self.stage_prefix[deal.pipeline] + "NEW",
            "TYPE_ID": deal.deal_type, "SOURCE_ID": deal.source, "CURRENCY_ID": "RUB",
            "OPPORTUNITY": deal.amount, "ASSIGNED_BY_ID": manager, "CONTACT_ID": contact_id, "OPENED": "Y",
        }
        if company_id is not None:
            fields["COMPANY_ID"] = company_id
        if deal.lead is not None:
            fields["LEAD_ID"] = self.lead_ids[deal.lead]
        channel = self.channel_ids.get(CHANNEL_OF_SOURCE[deal.source])
        if channel is not None:
            fields[self.channel_field] = channel
        self.deal_ids[index] = self.call("crm.deal.add", {"fields": fields}, manager)

    def _deal_move(self, index: int, target: tuple[int, str]) -> None:
        deal = self.plan.deals[index]
        pipeline, stage = target
        manager = self.manager_ids[deal.manager]
        stage_id = self.stage_prefix[pipeline] + stage
        deal_id = self.deal_ids[index]
        if self.deal_pipeline.get(index, deal.pipeline) != pipeline:
            self.deal_pipeline[index] = pipeline
            self.call("crm.item.update", {"entityTypeId": DEAL, "id": deal_id, "fields": {
                "categoryId": self.category_ids[pipeline], "stageId": stage_id}}, manager)
            return
        fields: dict[str, Any] = {"STAGE_ID": stage_id}
        if stage in ("FINAL_INVOICE", "WON") and index not in self.with_contract:
            self.with_contract.add(index)
            self.contracts += 1
            year = datetime.fromtimestamp(self.clock.moment, self.portal.tz).year
            fields[self.contract_field] = f"Д-{year}/{self.contracts:05d}"
        self.call("crm.deal.update", {"id": deal_id, "fields": fields}, manager)


def populate(portal: "Portal", deals: int, seed: int) -> dict[str, int]:
    """Fill ``portal`` with about ``deals`` deals and their year of history, deterministically by ``seed``.

    Everything goes through the portal's methods with the clock set back to each moment; the
    portal's own clock is restored afterwards. Returns counts of what was created.
    """
    end = _day_start(portal)
    # Planning and playing create no reference cycles, only a growing plan and portal that every
    # cyclic collection would scan again (a third of the time at 10,000 deals, more when bigger).
    with cyclic_gc_paused():
        plan = make_plan(deals, seed, end, _tz_offset(portal))
        saved_clock = getattr(portal, "_clock", None)
        player = _Player(portal, plan)
        portal.clock = player.clock
        try:
            with portal.lock:
                player.set_up()
                player.play()
        finally:
            portal.clock = saved_clock
    return {"managers": len(player.manager_ids), "leads": len(player.lead_ids), "deals": len(player.deal_ids),
            "clients": len(player.clients)}


def end_of_plan(portal: "Portal") -> datetime:
    """The moment the seeded year ends for this portal (start of its current day)."""
    return datetime.fromtimestamp(_day_start(portal), portal.tz)

