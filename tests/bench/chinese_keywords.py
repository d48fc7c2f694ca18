"""Chinese keyword retrieval: Qdrant Edge's BM25 (multilingual tokenizer) vs Milvus' BM25 with the
jieba (``chinese``) analyzer, on the same small Chinese corpus. Prints JSON.

    .venv/bin/python tests/bench/chinese_keywords.py

Keyword search only (the sparse side of hybrid: what keeps Chinese working with an English
embedding model): each question is written with words of its passage, partly reworded, and the
passage must be in the top 5 (recall@5) and first (recall@1). Both stores get the same chunks;
Milvus Lite runs in process.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

DIM = 8
PASSAGES = [
    "龙井茶产自杭州西湖一带，是中国十大名茶之一，泡茶的水温以八十度左右为宜。",
    "高铁从北京南站到上海虹桥大约需要四个半小时，二等座票价五百多元。",
    "办理银行卡需要携带本人有效身份证件，到柜台填写开户申请表并设置密码。",
    "台风季节一般在七月到九月，沿海地区要注意防范暴雨、大风和风暴潮。",
    "大熊猫主要生活在四川、陕西和甘肃的山区，以竹子为主要食物。",
    "长城是中国古代的军事防御工程，总长度超过两万公里，八达岭段最为有名。",
    "申请护照需要在户籍所在地的出入境管理部门提交照片和身份证，一般十个工作日出证。",
    "糖尿病患者应当控制饮食中的糖分和碳水化合物，并定期检测血糖。",
    "新能源汽车的电池一般可以使用八年左右，冬季低温会让续航里程明显下降。",
    "个人所得税的年度汇算在每年三月一日到六月三十日之间，可以在手机应用上办理。",
    "孩子发烧超过三十八点五度时可以服用退烧药，并多喝温水，持续不退要去医院。",
    "西安的兵马俑是秦始皇陵的陪葬坑，被称为世界第八大奇迹。",
    "公积金贷款的利率比商业贷款低，首套房的首付比例最低为百分之二十。",
    "垃圾分类分为可回收物、有害垃圾、厨余垃圾和其他垃圾四类，废电池属于有害垃圾。",
    "黄山以奇松、怪石、云海和温泉闻名，最佳观赏日出的地点是光明顶。",
    "机器学习模型在训练集上表现很好但在测试集上很差，通常说明出现了过拟合。",
    "社保卡丢失后可以拨打服务热线临时挂失，再到社保经办机构补办新卡。",
    "普洱茶属于黑茶，越陈越香，存放时要注意通风和防潮。",
    "地铁早高峰一般在七点半到九点之间，这段时间车厢非常拥挤。",
    "苏州园林以拙政园和留园最为著名，体现了江南古典园林的造园艺术。",
    "驾驶证有效期满前九十天内需要申请换证，需提交身份证明和体检证明。",
    "红烧肉的做法是先把五花肉焯水，再加冰糖炒出糖色，最后小火慢炖一个小时。",
    "太阳能电池板的发电效率受光照强度和温度影响，夏天高温时效率反而会降低。",
    "敦煌莫高窟保存了大量壁画和彩塑，是佛教艺术的宝库。",
    "信用卡逾期会产生罚息并影响个人征信记录，应当按时足额还款。",
]
QUESTIONS = [  # (question, index of the passage that answers it)
    ("西湖龙井泡茶用多少度的水", 0),
    ("北京到上海高铁要多久", 1),
    ("办银行卡要带什么证件", 2),
    ("台风一般几月份来", 3),
    ("熊猫吃什么", 4),
    ("长城有多长", 5),
    ("办护照需要几个工作日", 6),
    ("糖尿病饮食要注意什么", 7),
    ("电动车电池冬天续航", 8),
    ("个税汇算什么时候办理", 9),
    ("小孩发烧吃退烧药", 10),
    ("兵马俑是谁的陪葬", 11),
    ("公积金贷款首付比例", 12),
    ("废电池是什么垃圾", 13),
    ("黄山看日出在哪里", 14),
    ("过拟合是什么意思", 15),
    ("社保卡丢了怎么补办", 16),
    ("普洱茶怎么存放", 17),
    ("地铁早高峰几点", 18),
    ("苏州最有名的园林", 19),
    ("驾照到期换证", 20),
    ("红烧肉怎么做", 21),
    ("太阳能板夏天发电效率", 22),
    ("莫高窟有什么", 23),
    ("信用卡逾期影响征信", 24),
]


def rand_vec(i: int) -> list[float]:
    import numpy as np

    v = np.random.default_rng(i).standard_normal(DIM)
    return list(v / np.linalg.norm(v))


def points():
    from bubble_desktop.core.kb.store import StoredPoint, point_id, sparse_document

    return [
        StoredPoint(
            point_id(f"d{i}", 0), rand_vec(i), sparse_document(t), {"doc_id": f"d{i}", "hash": "h", "text": t}
        )
        for i, t in enumerate(PASSAGES)
    ]


def edge_ranks(work: Path) -> list[list[str]]:
    from qdrant_edge import Query, QueryRequest, SparseVector

    from bubble_desktop.core.kb.store import SPARSE, EdgeStore, sparse_query

    store = EdgeStore(work / "edge", DIM)
    store.upsert(points())
    out = []
    for q, _ in QUESTIONS:
        idx, val = sparse_query(q)
        req = QueryRequest(
            limit=5, query=Query.Nearest(SparseVector(list(idx), list(val)), using=SPARSE), with_payload=True
        )
        out.append([str(p.payload["doc_id"]) for p in store._shard.query(req)])
    store.close()
    return out


def milvus_ranks(work: Path) -> tuple[list[list[str]], str]:
    from bubble_desktop.core.kb.milvus_store import MilvusStore

    store = MilvusStore.open_lite(work / "milvus.db", DIM, "chinese")
    store.upsert(points())
    out = []
    for q, _ in QUESTIONS:
        res = store._client.search(
            store.collection, data=[q], anns_field="bm25", limit=5, output_fields=["doc_id"]
        )[0]
        out.append([str(h["entity"]["doc_id"]) for h in res])
    analyzer = store.analyzer
    store.close()
    return out, analyzer


def score(ranks: list[list[str]]) -> dict[str, float]:
    at5 = sum(f"d{want}" in r[:5] for r, (_, want) in zip(ranks, QUESTIONS, strict=True))
    at1 = sum(bool(r) and r[0] == f"d{want}" for r, (_, want) in zip(ranks, QUESTIONS, strict=True))
    return {"recall_at_5": round(at5 / len(QUESTIONS), 3), "recall_at_1": round(at1 / len(QUESTIONS), 3)}


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="bubble-bench-zh-"))
    try:
        t = time.perf_counter()
        edge = edge_ranks(work)
        edge_s = time.perf_counter() - t
        t = time.perf_counter()
        milvus, analyzer = milvus_ranks(work)
        milvus_s = time.perf_counter() - t
        missed = {
            "edge": [q for r, (q, w) in zip(edge, QUESTIONS, strict=True) if f"d{w}" not in r[:5]],
            "milvus": [q for r, (q, w) in zip(milvus, QUESTIONS, strict=True) if f"d{w}" not in r[:5]],
        }
        print(
            json.dumps(
                {
                    "passages": len(PASSAGES),
                    "questions": len(QUESTIONS),
                    "edge_bm25_multilingual": {**score(edge), "run_s": round(edge_s, 2)},
                    f"milvus_lite_bm25_{analyzer}": {**score(milvus), "run_s": round(milvus_s, 2)},
                    "missed_at_5": missed,
                },
                ensure_ascii=False,
                indent=2,
            )
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
